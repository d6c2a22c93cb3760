"""The embedding backfill: missing and outdated vectors filled, a bounded batch per run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from example.agent import memory as agent_memory
from example.agent.models import Memory
from example.documents.embedders import HashingEmbedder, get_embedder
from example.documents.models import Chunk, DocumentStatus
from example.documents.search import from_bytes, to_bytes

pytestmark = pytest.mark.django_db


def chunks_for(document: Any, texts: list[str], **extra: Any) -> list[Chunk]:
    return [
        Chunk.objects.create(document=document, index=i, page_start=1, page_end=1, text=text, **extra)
        for i, text in enumerate(texts)
    ]


def test_fills_missing_and_outdated_vectors_in_bounded_batches(make_user, make_document) -> None:
    embedder = get_embedder("hashing")
    owner = make_user()
    ready = make_document(owner, embedder_name="hashing", embedder_version="hashing-v0-512")
    missing = chunks_for(ready, [f"chunk number {i} about rivers and bridges" for i in range(4)])
    outdated = Chunk.objects.create(
        document=ready,
        index=9,
        page_start=2,
        page_end=2,
        text="an old vector",
        embedding=to_bytes(np.ones(8, dtype=np.float32)),
        embedder_name="hashing",
        embedder_version="hashing-v0-8",
    )
    busy = make_document(owner, status=DocumentStatus.PROCESSING)
    (in_progress,) = chunks_for(busy, ["the pipeline embeds this one itself"])
    memories = [Memory.objects.create(text=f"memory {i}", event_key=f"m{i}") for i in range(3)]
    stamped = ready.updated_at

    first = agent_memory.backfill_embeddings(batch=2, max_batches=1)

    assert (first["chunks"], first["memories"]) == (2, 2)
    assert (first["chunks_remaining"], first["memories_remaining"]) == (3, 1)
    assert first["embedder"] == "hashing"

    second = agent_memory.backfill_embeddings(batch=2, max_batches=1)
    third = agent_memory.backfill_embeddings(batch=2, max_batches=1)

    assert (second["chunks"], second["memories"]) == (2, 1)
    assert (third["chunks"], third["memories"], third["chunks_remaining"], third["memories_remaining"]) == (
        1,
        0,
        0,
        0,
    )
    for row in [*missing, outdated, *memories]:
        row.refresh_from_db()
        assert (row.embedder_name, row.embedder_version) == ("hashing", embedder.version)
        vector = from_bytes(bytes(row.embedding), embedder.dim)
        assert np.allclose(vector, embedder.embed([row.text])[0])
        assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    in_progress.refresh_from_db()
    assert in_progress.embedding is None  # left to the processing job
    ready.refresh_from_db()
    assert (ready.embedder_name, ready.embedder_version) == ("hashing", embedder.version)
    assert ready.updated_at > stamped  # moves the search's generation token: cached indexes are rebuilt

    assert agent_memory.backfill_embeddings(batch=2, max_batches=1)["chunks"] == 0  # nothing left


def test_a_run_does_several_batches_up_to_its_limit(make_document) -> None:
    chunks_for(make_document(), [f"text {i}" for i in range(7)])

    result = agent_memory.backfill_embeddings(batch=2, max_batches=3)

    assert (result["chunks"], result["chunks_remaining"]) == (6, 1)


def test_a_new_embedder_version_makes_everything_stale_again(make_document, settings: Any) -> None:
    settings.DOCUMENTS_EMBEDDER = "hashing"
    chunks_for(make_document(), ["alpha", "beta"])
    agent_memory.backfill_embeddings()

    small = HashingEmbedder(dim=64)
    result = agent_memory.backfill_embeddings(embedder=small)

    assert result["chunks"] == 2
    assert set(Chunk.objects.values_list("embedder_version", flat=True)) == {small.version}
    assert all(len(bytes(c.embedding)) == 64 * 4 for c in Chunk.objects.all())
