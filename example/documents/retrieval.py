"""Semantic search over the stored chunks: the Django side of :mod:`example.documents.search`.

The chunk vectors of the current embedder are loaded into one NumPy matrix per process and reused
while the generation token is unchanged. The token is one cheap aggregate over the small documents
table, so a web process notices chunks written by a worker process without any message between them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from django.db.models import Count, Max, Sum
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import conf, search
from .embedders import Embedder, get_embedder
from .models import Chunk, Document

MAX_QUERY_CHARS = 500
DEFAULT_K = 10
# Candidates fetched per wanted hit, so enough remain after skipping overlapping neighbours.
CANDIDATES_PER_HIT = 3
#: The relevance floor: below this cosine similarity a chunk is returned only when it shares a query
#: word. Measured on the test topics: nonsense ("xqzv blorft") scores <= 0.10 with WordLlama and <= 0.13
#: with hashing, a topical question 0.5-0.65 with WordLlama. ``DOCUMENTS_SEARCH_MIN_SCORE`` overrides.
MIN_SCORE = {"wordllama": 0.2, "hashing": 0.15, "minilm": 0.25}
DEFAULT_MIN_SCORE = 0.2


def current_embedder() -> Embedder:
    """The embedder new documents are processed with, and so the only one a query can be compared with."""
    return get_embedder(conf.embedder_setting())


def generation_token() -> tuple[Any, ...]:
    """Changes whenever the searchable chunks may have changed.

    Every chunk write (ready, failed, reprocessed) also sets the document's ``updated_at`` in the same
    transaction; a deletion changes the count, and the chunk sum catches a document replaced in place.
    One race remains: two stores committing in the opposite order of their timestamps, with a query
    in between and an unchanged chunk sum, keep a stale matrix until the next change. A counter row
    bumped in the store transaction would close it; for a demo the cheap token is the better trade.
    """
    agg = Document.objects.aggregate(n=Count("id"), last=Max("updated_at"), chunks=Sum("chunk_count"))
    return (agg["n"], agg["last"], agg["chunks"])


def _load_matrix(embedder: Embedder) -> tuple[list[int], np.ndarray]:
    rows = (
        Chunk.objects.filter(
            embedder_name=embedder.name, embedder_version=embedder.version, embedding__isnull=False
        )
        .order_by("id")
        .values_list("id", "embedding")
    )
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for chunk_id, blob in rows.iterator(chunk_size=2000):
        if blob is not None:
            ids.append(chunk_id)
            blobs.append(blob)
    if not ids:
        return [], np.zeros((0, embedder.dim), dtype=np.float32)
    return ids, search.matrix_from_bytes(blobs, embedder.dim)


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    segments: list[tuple[str, bool]]

    @property
    def document(self) -> Document:
        return self.chunk.document

    @property
    def snippet(self) -> SafeString:
        """The highlighted snippet: every piece is escaped, matches are wrapped in ``<mark>``."""
        return format_html_join(
            "",
            "{}",
            (
                (format_html("<mark>{}</mark>", text) if is_match else text,)
                for text, is_match in self.segments
            ),
        )


@dataclass(frozen=True)
class Results:
    query: str
    hits: list[Hit]
    embedder: Embedder
    searched: int
    took_ms: float


def min_score(embedder: Embedder) -> float:
    configured = conf.search_min_score()
    return configured if configured is not None else MIN_SCORE.get(embedder.name, DEFAULT_MIN_SCORE)


def search_chunks(query: str, k: int = DEFAULT_K) -> Results:
    """Embed ``query`` and return the ``k`` most similar chunks of the current embedder, best first.

    Chunks overlap their neighbours, so the same passage often scores twice; a chunk next to a better
    hit of the same document is skipped so the ``k`` results show ``k`` different places. A chunk
    under the relevance floor (:func:`min_score`) is dropped unless it contains a query word: a
    nonsense query finds nothing instead of the ten least-bad chunks.
    """
    query = " ".join(query.split())[:MAX_QUERY_CHARS]
    started = time.perf_counter()
    embedder = current_embedder()
    key = (embedder.name, embedder.version, generation_token())
    index = search.get_cached_index(key, lambda: _load_matrix(embedder))
    found: list[tuple[int, float]] = []
    if query:
        nearest = index.search(embedder.embed([query])[0], k * CANDIDATES_PER_HIT)
        found = [(cast(int, chunk_id), score) for chunk_id, score in nearest]  # ids from _load_matrix
    chunks = Chunk.objects.select_related("document").in_bulk([chunk_id for chunk_id, _ in found])
    hits: list[Hit] = []
    taken: set[tuple[int, int]] = set()
    floor = min_score(embedder)
    for chunk_id, score in found:
        chunk = chunks.get(chunk_id)
        if chunk is None:  # deleted since the matrix was built
            continue
        place = (chunk.document_id, chunk.index)
        if {(chunk.document_id, chunk.index - 1), (chunk.document_id, chunk.index + 1)} & taken:
            continue
        segments = search.highlight(chunk.text, query)
        if score < floor and not any(is_match for _, is_match in segments):
            continue
        taken.add(place)
        hits.append(Hit(chunk=chunk, score=score, segments=segments))
        if len(hits) == k:
            break
    return Results(
        query=query,
        hits=hits,
        embedder=embedder,
        searched=len(index),
        took_ms=(time.perf_counter() - started) * 1000,
    )
