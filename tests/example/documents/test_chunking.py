from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

from example.documents.chunking import ChunkSpec, chunk_pages, normalise_page, window_for

WORDS = [
    "amber",
    "basalt",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "granite",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lagoon",
    "marble",
    "nectar",
    "obsidian",
    "prairie",
    "quartz",
    "raven",
    "sierra",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]


def sentences(rng: random.Random, count: int) -> str:
    out = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


@pytest.fixture
def pages() -> list[str]:
    rng = random.Random(7)
    return [sentences(rng, rng.randint(2, 30)) for _ in range(30)]


def shared_overlap(prev: str, nxt: str) -> int:
    return max((k for k in range(1, min(len(prev), len(nxt)) + 1) if prev.endswith(nxt[:k])), default=0)


def test_chunks_cover_every_page_in_order(pages: list[str]) -> None:
    chunks = chunk_pages(pages, max_chars=800, overlap_chars=150)

    covered = {p for c in chunks for p in range(c.page_start, c.page_end + 1)}
    assert covered == set(range(1, len(pages) + 1))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(1 <= c.page_start <= c.page_end <= len(pages) for c in chunks)
    assert all(a.page_start <= b.page_start for a, b in itertools.pairwise(chunks))


def test_chunks_respect_size_and_are_never_empty(pages: list[str]) -> None:
    chunks = chunk_pages(pages, max_chars=800, overlap_chars=150)

    assert all(0 < len(c.text) <= 800 for c in chunks)
    assert all(c.text == c.text.strip() for c in chunks)
    # Windows close at sentence ends, so only the last chunk of the document may end mid-sentence.
    assert all(c.text.endswith(".") for c in chunks[:-1])


def test_consecutive_chunks_overlap_by_about_the_requested_amount(pages: list[str]) -> None:
    chunks = chunk_pages(pages, max_chars=800, overlap_chars=150)

    overlaps = [shared_overlap(a.text, b.text) for a, b in itertools.pairwise(chunks)]
    assert all(130 <= k <= 150 for k in overlaps), overlaps
    # Each overlap starts on a word boundary.
    assert all(b.text.split()[0].rstrip(".").lower() in WORDS for b in chunks[1:])


def test_without_overlap_the_chunks_rebuild_the_text_exactly(pages: list[str]) -> None:
    chunks = chunk_pages(pages, max_chars=500, overlap_chars=0)

    assert " ".join(c.text for c in chunks) == " ".join(" ".join(pages).split())


def test_a_window_across_a_page_break_reports_both_pages() -> None:
    chunks = chunk_pages(
        ["Short first page.", "Short second page.", "Third."], max_chars=800, overlap_chars=100
    )

    assert chunks == [ChunkSpec(0, 1, 3, "Short first page. Short second page. Third.")]


def test_whitespace_is_normalised_and_blank_pages_are_skipped() -> None:
    chunks = chunk_pages(["  \n\t ", "Tabs\tand   spaces\nand\r\nnewlines.", "", "   "])

    assert chunks == [ChunkSpec(0, 2, 2, "Tabs and spaces and newlines.")]
    assert chunk_pages(["", " \n "]) == []
    assert normalise_page("a  b\n\n\n c\td") == "a b\n\nc d"


def test_a_word_longer_than_the_window_is_cut_hard_but_nothing_is_lost() -> None:
    chunks = chunk_pages(["x" * 250], max_chars=100, overlap_chars=0)

    assert [len(c.text) for c in chunks] == [100, 100, 50]


def test_window_depends_on_the_embedder() -> None:
    assert window_for("wordllama") == window_for("hashing") == (800, 150)
    assert window_for(SimpleNamespace(name="minilm")) == (1000, 150)
    assert window_for("something-new") == (800, 150)


def test_invalid_windows_are_rejected() -> None:
    with pytest.raises(ValueError):
        chunk_pages(["text"], max_chars=100, overlap_chars=60)
    with pytest.raises(ValueError):
        chunk_pages(["text"], max_chars=10, overlap_chars=0)
