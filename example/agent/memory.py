"""Memories: remembering an event once, embedding what lacks a current vector, merging and rolling up."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from example.documents.embedders import Embedder, get_embedder
from example.documents.models import Chunk, Document, DocumentStatus
from example.documents.search import from_bytes, to_bytes

from . import conf
from .models import Memory, MemoryKind

logger = logging.getLogger(__name__)

_EMBEDDING_FIELDS = ["embedding", "embedder_name", "embedder_version"]


def current_embedder() -> Embedder:
    """The embedder the documents app uses (``DOCUMENTS_EMBEDDER``), so memories and chunks compare."""
    return get_embedder(str(conf.get("DOCUMENTS_EMBEDDER") or "auto"))


def remember(
    *,
    user_id: int | None,
    kind: str,
    text: str,
    source: str,
    event_key: str,
    now: datetime,
) -> bool:
    """Store a memory for ``event_key`` unless one exists; True when this call created it."""
    _, created = Memory.objects.get_or_create(
        event_key=event_key,
        defaults={
            "user_id": user_id,
            "kind": kind,
            "text": text,
            "source": source,
            "created_at": now,
            "last_seen_at": now,
        },
    )
    return created


def _stale(embedder: Embedder) -> Q:
    """Rows with no vector, or a vector from another embedder or version (not comparable)."""
    return Q(embedding__isnull=True) | ~Q(embedder_name=embedder.name) | ~Q(embedder_version=embedder.version)


def _embed_rows(rows: Sequence[Chunk | Memory], embedder: Embedder) -> None:
    vectors = embedder.embed([row.text for row in rows])
    for row, vector in zip(rows, vectors, strict=True):
        row.embedding = to_bytes(vector)
        row.embedder_name = embedder.name
        row.embedder_version = embedder.version


def _backfill_chunks(embedder: Embedder, batch: int) -> int:
    """Embed one batch of stale chunks of ready documents; stamp documents whose chunks are all current."""
    # Documents still being processed are left to the pipeline, which embeds its own chunks.
    chunks = list(
        Chunk.objects.filter(_stale(embedder), document__status=DocumentStatus.READY)
        .order_by("pk")
        .only("pk", "text", "document_id")[:batch]
    )
    if not chunks:
        return 0
    _embed_rows(chunks, embedder)
    with transaction.atomic():
        # Lock the documents first, as the pipeline does before replacing chunks: a document reprocessed
        # meanwhile has new chunks (these rows are gone) or is no longer ready, and is left alone.
        ready = set(
            Document.objects.select_for_update()
            .filter(pk__in={chunk.document_id for chunk in chunks}, status=DocumentStatus.READY)
            .values_list("pk", flat=True)
        )
        chunks = [chunk for chunk in chunks if chunk.document_id in ready]
        Chunk.objects.bulk_update(chunks, _EMBEDDING_FIELDS, batch_size=200)
        still_stale = set(
            Chunk.objects.filter(_stale(embedder), document_id__in=ready).values_list(
                "document_id", flat=True
            )
        )
        # updated_at moves the search's generation token, so every process rebuilds its cached index.
        Document.objects.filter(pk__in=ready).update(updated_at=timezone.now())
        Document.objects.filter(pk__in=ready - still_stale).update(
            embedder_name=embedder.name, embedder_version=embedder.version
        )
    return len(chunks)


def _backfill_memories(embedder: Embedder, batch: int) -> int:
    memories = list(
        Memory.objects.active().filter(_stale(embedder)).order_by("pk").only("pk", "text")[:batch]
    )
    if memories:
        _embed_rows(memories, embedder)
        Memory.objects.bulk_update(memories, _EMBEDDING_FIELDS, batch_size=200)
    return len(memories)


def backfill_embeddings(
    *, embedder: Embedder | None = None, batch: int | None = None, max_batches: int | None = None
) -> dict[str, Any]:
    """Embed chunks and active memories lacking a current vector: at most ``max_batches`` of ``batch``
    rows of each per run, so one run stays well inside the five-minute cadence however large the gap.
    """
    embedder = embedder or current_embedder()
    batch = int(batch or conf.get("AGENT_BACKFILL_BATCH"))
    max_batches = int(max_batches or conf.get("AGENT_BACKFILL_MAX_BATCHES"))
    chunks = memories = 0
    for _ in range(max_batches):
        done = _backfill_chunks(embedder, batch)
        chunks += done
        if done < batch:
            break
    for _ in range(max_batches):
        done = _backfill_memories(embedder, batch)
        memories += done
        if done < batch:
            break
    result = {
        "embedder": embedder.name,
        "version": embedder.version,
        "chunks": chunks,
        "memories": memories,
        "chunks_remaining": Chunk.objects.filter(
            _stale(embedder), document__status=DocumentStatus.READY
        ).count(),
        "memories_remaining": Memory.objects.active().filter(_stale(embedder)).count(),
    }
    logger.info("embedding backfill: %s", result)
    return result


@dataclass
class _Merge:
    merged: int = 0
    embedded: int = 0


def _merge_duplicates(memories: list[Memory], embedder: Embedder, threshold: float, result: _Merge) -> None:
    """Greedy, oldest first: each surviving memory absorbs later ones of the same kind that are at least
    ``threshold`` cosine-similar. The oldest survives so links from earlier merges stay valid.
    """
    stale = [
        m
        for m in memories
        if m.embedding is None or (m.embedder_name, m.embedder_version) != (embedder.name, embedder.version)
    ]
    if stale:
        _embed_rows(stale, embedder)
        Memory.objects.bulk_update(stale, _EMBEDDING_FIELDS, batch_size=200)
        result.embedded += len(stale)
    matrix = np.stack([from_bytes(bytes(m.embedding), embedder.dim) for m in memories])  # type: ignore[arg-type]
    sims = matrix @ matrix.T
    absorbed = np.zeros(len(memories), dtype=bool)
    survivors: dict[int, Memory] = {}
    dups: list[Memory] = []
    for i, keeper in enumerate(memories):
        if absorbed[i]:
            continue
        for j in np.nonzero(sims[i, i + 1 :] >= threshold)[0] + i + 1:
            if absorbed[j] or memories[j].kind != keeper.kind:
                continue
            dup = memories[j]
            absorbed[j] = True
            dup.merged_into = keeper
            keeper.mentions += dup.mentions
            keeper.last_seen_at = max(keeper.last_seen_at, dup.last_seen_at)
            survivors[keeper.pk] = keeper
            dups.append(dup)
    if dups:
        Memory.objects.bulk_update(dups, ["merged_into"], batch_size=200)
        Memory.objects.bulk_update(list(survivors.values()), ["mentions", "last_seen_at"], batch_size=200)
        result.merged += len(dups)


def _of_user(user_id: int | None) -> Q:
    return Q(user__isnull=True) if user_id is None else Q(user_id=user_id)


def _summary_text(memories: Sequence[Memory]) -> str:
    first, last = memories[0].created_at, memories[-1].created_at
    lines = [f"Summary of {len(memories)} memories from {first:%Y-%m-%d} to {last:%Y-%m-%d}:"]
    for memory in memories:
        text = " ".join(memory.text.split())
        text = text if len(text) <= 200 else text[:199] + "…"
        times = f" (x{memory.mentions})" if memory.mentions > 1 else ""
        lines.append(f"- {memory.created_at:%Y-%m-%d} {text}{times}")
    return "\n".join(lines)


def _roll_up(user_id: int | None, now: datetime) -> int:
    """Roll one user's old active memories into a summary memory; returns how many were rolled up."""
    cutoff = now - timedelta(days=float(conf.get("AGENT_MEMORY_SUMMARY_AFTER_DAYS")))
    old = list(
        Memory.objects.active()
        .filter(_of_user(user_id), created_at__lt=cutoff)
        .exclude(kind=MemoryKind.SUMMARY)
        .order_by("created_at", "pk")[: int(conf.get("AGENT_MEMORY_SUMMARY_MAX"))]
    )
    if len(old) < int(conf.get("AGENT_MEMORY_SUMMARY_MIN")):
        return 0
    summary = Memory.objects.create(
        user_id=user_id,
        kind=MemoryKind.SUMMARY,
        text=_summary_text(old),
        source="summary",
        created_at=now,
        last_seen_at=max(m.last_seen_at for m in old),
        mentions=sum(m.mentions for m in old),
    )
    return Memory.objects.filter(pk__in=[m.pk for m in old]).update(summarized_in=summary)


def consolidate_memories(*, now: datetime, embedder: Embedder | None = None) -> dict[str, Any]:
    """Per user: merge near-duplicate active memories, then roll the old ones up into one summary."""
    embedder = embedder or current_embedder()
    threshold = float(conf.get("AGENT_MEMORY_MERGE_THRESHOLD"))
    window = int(conf.get("AGENT_MEMORY_CONSOLIDATION_WINDOW"))
    merge = _Merge()
    summaries = rolled = 0
    user_ids = list(Memory.objects.active().order_by().values_list("user_id", flat=True).distinct())
    for user_id in user_ids:
        with transaction.atomic():
            recent: QuerySet[Memory] = (
                Memory.objects.active().filter(_of_user(user_id)).exclude(kind=MemoryKind.SUMMARY)
            )
            # The newest ``window`` memories, compared oldest first.
            memories = list(recent.order_by("-created_at", "-pk")[:window])[::-1]
            if len(memories) > 1:
                _merge_duplicates(memories, embedder, threshold, merge)
            count = _roll_up(user_id, now)
            if count:
                summaries += 1
                rolled += count
    result = {
        "users": len(user_ids),
        "merged": merge.merged,
        "embedded": merge.embedded,
        "summaries": summaries,
        "summarized": rolled,
    }
    logger.info("memory consolidation: %s", result)
    return result
