from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from example.documents import search
from example.documents.search import (
    VectorIndex,
    from_bytes,
    get_cached_index,
    highlight,
    invalidate,
    matrix_from_bytes,
    to_bytes,
)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    invalidate()


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_bytes_round_trip_is_exact_and_little_endian() -> None:
    vec = unit_rows(1, 8)[0]

    blob = to_bytes(vec)

    assert len(blob) == 32
    assert blob == vec.astype("<f4").tobytes()
    assert np.array_equal(from_bytes(blob, 8), vec)
    assert from_bytes(memoryview(blob), 8).dtype == np.float32
    with pytest.raises(ValueError, match="expected 36 bytes"):
        from_bytes(blob, 9)


def test_matrix_from_bytes_stacks_stored_rows() -> None:
    matrix = unit_rows(5, 16)

    assert np.array_equal(matrix_from_bytes([to_bytes(row) for row in matrix], 16), matrix)
    with pytest.raises(ValueError):
        matrix_from_bytes([to_bytes(matrix[0]), b"\x00" * 4], 16)


def test_search_returns_the_true_top_k_in_order() -> None:
    matrix = unit_rows(500, 32)
    ids = [f"chunk-{i}" for i in range(500)]
    query = unit_rows(1, 32, seed=9)[0]
    expected = np.argsort(-(matrix @ query))[:10]

    hits = VectorIndex(ids, matrix).search(query, k=10)

    assert [h[0] for h in hits] == [ids[i] for i in expected]
    scores = [h[1] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(matrix[expected[0]] @ query), abs=1e-6)


def test_search_edge_cases() -> None:
    index = VectorIndex([1, 2, 3], np.eye(3, dtype=np.float32))

    assert [i for i, _ in index.search(np.array([0.1, 0.9, 0.5]), k=50)] == [2, 3, 1]
    assert index.search(np.zeros(3), k=2) == []
    assert index.search(np.ones(3), k=0) == []
    assert VectorIndex([], np.zeros((0, 3))).search(np.ones(3)) == []
    with pytest.raises(ValueError, match="dim"):
        index.search(np.ones(4))
    with pytest.raises(ValueError):
        VectorIndex([1, 2], np.eye(3))


def test_cached_index_is_built_once_per_key_and_rebuilt_after_invalidation() -> None:
    builds: list[int] = []

    def builder() -> tuple[list[int], np.ndarray]:
        builds.append(1)
        return [7, 8], np.eye(2, dtype=np.float32)

    first = get_cached_index(("wordllama", "v1", 1), builder)
    assert get_cached_index(("wordllama", "v1", 1), builder) is first
    assert len(builds) == 1

    get_cached_index(("wordllama", "v1", 2), builder)
    assert len(builds) == 2

    invalidate(("wordllama", "v1", 1))
    assert get_cached_index(("wordllama", "v1", 1), builder) is not first
    assert len(builds) == 3


def test_cache_keeps_only_the_most_recent_indexes() -> None:
    for generation in range(search.MAX_CACHED_INDEXES + 3):
        get_cached_index(("hashing", "v1", generation), lambda: ([1], np.ones((1, 2), dtype=np.float32)))

    assert len(search._cache) == search.MAX_CACHED_INDEXES
    assert ("hashing", "v1", 0) not in search._cache


def test_concurrent_first_queries_build_once() -> None:
    builds: list[int] = []

    def slow_builder() -> tuple[list[int], np.ndarray]:
        builds.append(1)
        time.sleep(0.05)
        return [1], np.ones((1, 4), dtype=np.float32)

    threads = [threading.Thread(target=get_cached_index, args=("key", slow_builder)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(builds) == 1


def test_highlight_marks_query_terms_in_a_snippet_around_them() -> None:
    text = (
        ("Filler sentence about nothing much. " * 20)
        + ("The embedding model turns each chunk into a vector for semantic search. ")
        + ("More filler text to pad the end. " * 20)
    )

    segments = highlight(text, "Semantic EMBEDDINGS search of the chunk", width=120)

    snippet = "".join(s for s, _ in segments)
    marked = [s for s, is_match in segments if is_match]
    assert marked == ["embedding", "chunk", "semantic", "search"]
    assert len(snippet) <= 120 + 2
    assert snippet.startswith("…") and snippet.endswith("…")
    assert snippet.strip("…") in " ".join(text.split())
    assert "The" not in marked


def test_highlight_matches_word_prefixes_and_prefers_the_densest_cluster() -> None:
    text = "Embed once here. " + "x " * 200 + "Embedding vectors make vector search fast. " + "y " * 200

    segments = highlight(text, "embed vector", width=80)

    assert [s for s, m in segments if m] == ["Embedding", "vectors", "vector"]


def test_highlight_returns_plain_text_without_escaping() -> None:
    segments = highlight("<script>alert(1)</script> & the search term", "search")

    assert segments == [("<script>alert(1)</script> & the ", False), ("search", True), (" term", False)]


def test_highlight_without_matches_returns_the_start_of_the_text() -> None:
    segments = highlight("word " * 100, "absent", width=50)

    assert len(segments) == 1
    text, is_match = segments[0]
    assert not is_match
    assert text.endswith("…")
    assert len(text) <= 51
    assert highlight("   ", "anything") == []
