"""The body of the ``process-chat-document`` job: extract -> chunk -> embed -> store, on one Document.

Contract ("the job body never throws"): :func:`process_document` records every outcome on
the Document itself and returns it as a dict, which becomes the ``JobRun`` result. A bad file is a
*document* failure, not a *job* failure: retrying would fail the same way, so the run succeeds and its
result says ``"status": "failed"`` with the exception class (``error_class``) and the user-facing
message. Unexpected exceptions (bugs) are handled the same way, with the traceback in the result.

Three things do escape, on purpose, because a retry is the right answer to them:

- an error while *recording* the failure (the database is down: nothing else could record it);
- the worker's time limit and shutdown interrupts (``BaseException``): the time limit is recorded on
  the document first, then re-raised so the run ends as ``timed_out``.

Re-running is safe: the new chunks are computed before anything is touched, then the old chunks are
deleted and the new ones inserted in one transaction, so a crash at any point leaves either the old set
or the new set, never both and never half. When two runs overlap on one document, the one that started
last owns it (``Document.last_run_id``); the other discards its work.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connections, router, transaction
from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import JobRun, RunMode
from fusion_jobs.registry import get_task

from . import conf, search
from .chunk_rows import ChunkRow, insert_chunks
from .chunking import chunk_pages, window_for
from .embedders import Embedder, EmbeddingTooSlow, embed_in_batches, fit_budget, get_embedder
from .extract import ExtractionError, NoTextError, TooManyPages, extract
from .models import Chunk, Document, DocumentStatus

#: The fusion-jobs task that runs :func:`process_document` (declared in ``tasks.py``).
TASK_NAME = "process-chat-document"

logger = logging.getLogger(__name__)

#: Stages in order, as reported with ``fusion_jobs.report_progress`` and stored in ``Document.timings``.
STAGES = ("load", "extract", "chunk", "embed", "store")
EMBED_BATCH = 256
TRACEBACK_LIMIT = 8000


class ProcessingError(Exception):
    """A failure that is not a bug; ``str(exc)`` is shown to the user as is."""

    code = "processing_error"


class FileMissing(ProcessingError):
    code = "file_missing"

    def __init__(self) -> None:
        super().__init__("the uploaded file is missing from storage: upload it again")


class BadConfiguration(ProcessingError):
    code = "bad_configuration"


class TooLargeForInline(ProcessingError):
    code = "too_large_for_inline"

    def __init__(self, pages: int, limit: int) -> None:
        super().__init__(
            f"too many pages to process inline, inside a web request: {pages:,}, limit {limit:,} "
            "(run a worker: set FUSION_JOBS_BROKER_URL)"
        )


class Superseded(Exception):
    """Another run started on the document after this one: its result wins, this one's is dropped."""


class DocumentGone(Exception):
    """The document was deleted while it was being processed."""


@dataclass
class _Job:
    document_id: int
    run_id: str | None
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    page_count: int | None = None
    inline: bool = False

    def budget_seconds(self) -> float:
        """The whole job's budget: tight inline (a web request is waiting), the embed budget on a worker."""
        return conf.inline_budget_seconds() if self.inline else conf.embed_budget_seconds()

    def remaining(self) -> float:
        return self.budget_seconds() - (time.perf_counter() - self.started)

    def lap(self, stage: str, since: float) -> None:
        """Record a stage's duration and publish it at once, so the document page shows it live."""
        self.timings[stage] = round(time.perf_counter() - since, 4)
        Document.objects.filter(pk=self.document_id).update(timings=dict(self.timings))


def process_document(document_id: int, *, embedder: Embedder | None = None) -> dict[str, Any]:
    """Make one document searchable and return the outcome (see the module docstring for the contract).

    ``embedder`` overrides ``DOCUMENTS_EMBEDDER`` (tests). Returns a JSON-serialisable dict with
    ``document_id`` and ``status`` ("ready", "failed", "missing" or "superseded"), plus counts and
    timings when ready, or ``error_class``/``error_code``/``error`` when failed.
    """
    run_id = fusion_jobs.current_run_id()
    job = _Job(document_id=document_id, run_id=run_id, inline=_runs_inline(run_id))
    try:
        document = _claim(job)
    except DocumentGone:
        return _missing(document_id)
    try:
        return _run(job, document, embedder)
    except DocumentGone:
        return _missing(document_id)
    except Superseded:
        logger.info("document %s: run %s was superseded by a newer run", document_id, job.run_id)
        return {"document_id": document_id, "status": "superseded"}
    except (ExtractionError, ProcessingError, EmbeddingTooSlow) as exc:
        return _fail(job, exc, str(exc))
    except Exception as exc:
        logger.exception("document %s: processing failed unexpectedly", document_id)
        message = f"processing failed unexpectedly ({type(exc).__name__}); the job run has the details"
        outcome = _fail(job, exc, message)
        outcome["traceback"] = "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]
        return outcome
    except BaseException as exc:
        # Dramatiq interrupts the thread with a BaseException: on its time limit (recorded here, since
        # the worker would otherwise leave the document "processing") or at shutdown (the message is
        # redelivered, so the document stays "processing" for the next attempt).
        if _is_time_limit(exc):
            _fail(job, exc, f"processing took longer than the job's {_time_limit():.0f} s limit")
        raise


def _runs_inline(run_id: str | None) -> bool:
    """Inside a web request (an inline run, or called directly): the tight inline budget applies."""
    if run_id is None:
        return True
    mode = JobRun.objects.filter(pk=run_id).values_list("mode", flat=True).first()
    return mode != RunMode.WORKER


def _claim(job: _Job) -> Document:
    """Mark the document processing and make this run its owner (the newest run wins)."""
    updates: dict[str, Any] = {
        "status": DocumentStatus.PROCESSING,
        "error": "",
        "timings": {},
        "updated_at": timezone.now(),
    }
    if job.run_id:
        updates["last_run_id"] = job.run_id
    if not Document.objects.filter(pk=job.document_id).update(**updates):
        raise DocumentGone
    try:
        return Document.objects.get(pk=job.document_id)
    except Document.DoesNotExist:
        raise DocumentGone from None


def _run(job: _Job, document: Document, embedder: Embedder | None) -> dict[str, Any]:
    report = fusion_jobs.report_progress

    since = time.perf_counter()
    report("load", None, None)
    embedder = embedder or _configured_embedder()
    job.lap("load", since)

    since = time.perf_counter()
    report("extract", 0, None)
    source = _source(document)
    page_limit = min(conf.max_pages(), conf.inline_max_pages()) if job.inline else conf.max_pages()
    try:
        extracted = extract(
            source,
            document.original_name or Path(document.file.name).name,
            document.content_type or None,
            max_bytes=conf.max_upload_bytes(),
            on_page=lambda done, total: report("extract", done, total),
            max_pages=page_limit,
            deadline=time.monotonic() + job.remaining(),
        )
    except TooManyPages as exc:
        if job.inline and exc.pages <= conf.max_pages():
            raise TooLargeForInline(exc.pages, page_limit) from exc
        raise
    job.page_count = extracted.page_count
    job.lap("extract", since)

    since = time.perf_counter()
    report("chunk", 0, None)
    specs = chunk_pages(extracted.pages, *window_for(embedder))
    del extracted, source  # the page texts are the biggest thing held from here on
    if not specs:
        raise NoTextError()
    report("chunk", len(specs), len(specs))
    job.lap("chunk", since)

    # Refuse now rather than be killed at the cap after minutes of work (a big PDF with MiniLM).
    embedder = fit_budget(embedder, len(specs), job.remaining(), fallback=None)

    since = time.perf_counter()
    report("embed", 0, len(specs))
    vectors = embed_in_batches(
        embedder,
        [spec.text for spec in specs],
        batch_size=EMBED_BATCH,
        on_batch=lambda done, total: report("embed", done, total),
    )
    job.lap("embed", since)

    since = time.perf_counter()
    report("store", 0, len(specs))
    blobs = np.ascontiguousarray(vectors, dtype="<f4")  # search.to_bytes' layout, one row per chunk
    rows: list[ChunkRow] = [
        (
            job.document_id,
            spec.index,
            spec.page_start,
            spec.page_end,
            spec.text,
            blob.tobytes(),
            embedder.name,
            embedder.version,
        )
        for spec, blob in zip(specs, blobs, strict=True)
    ]
    del blobs
    del vectors

    def finish() -> None:
        job.timings["store"] = round(time.perf_counter() - since, 4)
        job.timings["total"] = round(time.perf_counter() - job.started, 4)
        now = timezone.now()
        Document.objects.filter(pk=job.document_id).update(
            status=DocumentStatus.READY,
            error="",
            page_count=job.page_count,
            chunk_count=len(rows),
            timings=dict(job.timings),
            embedder_name=embedder.name,
            embedder_version=embedder.version,
            processed_at=now,
            updated_at=now,
        )

    _replace_chunks(job, rows, finish)
    report("store", len(rows), len(rows))
    return {
        "document_id": job.document_id,
        "status": DocumentStatus.READY.value,
        "pages": job.page_count,
        "chunks": len(rows),
        "embedder": embedder.name,
        "embedder_version": embedder.version,
        "timings": dict(job.timings),
    }


def _replace_chunks(job: _Job, rows: list[ChunkRow], then: Callable[[], None]) -> None:
    """Swap the document's chunks for ``rows`` and run ``then`` in one transaction.

    Locking the document row first serialises two runs on the same document (without it, their
    inserts could collide on the unique (document, index) constraint) and lets the fence check see
    the latest owner.
    """
    using = router.db_for_write(Chunk)
    with transaction.atomic(using=using):
        locked = (
            Document.objects.using(using)
            .select_for_update()
            .filter(pk=job.document_id)
            .values("last_run_id")
            .first()
        )
        if locked is None:
            raise DocumentGone
        if job.run_id and locked["last_run_id"] and str(locked["last_run_id"]) != job.run_id:
            raise Superseded
        Chunk.objects.using(using).filter(document_id=job.document_id).delete()
        insert_chunks(connections[using], rows)
        then()
    search.invalidate()


def _fail(job: _Job, exc: BaseException, message: str) -> dict[str, Any]:
    """Record the failure on the document (dropping its chunks: a failed document is not searchable)."""
    logger.info("document %s failed: %s: %s", job.document_id, type(exc).__name__, message)
    job.timings["total"] = round(time.perf_counter() - job.started, 4)

    def mark_failed() -> None:
        now = timezone.now()
        Document.objects.filter(pk=job.document_id).update(
            status=DocumentStatus.FAILED,
            error=message,
            page_count=job.page_count,
            chunk_count=None,
            timings=dict(job.timings),
            processed_at=now,
            updated_at=now,
        )

    try:
        _replace_chunks(job, [], mark_failed)
    except DocumentGone:
        return _missing(job.document_id)
    except Superseded:
        return {"document_id": job.document_id, "status": "superseded"}
    return {
        "document_id": job.document_id,
        "status": DocumentStatus.FAILED.value,
        "error_class": type(exc).__name__,
        "error_code": getattr(exc, "code", "internal_error"),
        "error": message,
    }


def _missing(document_id: int) -> dict[str, Any]:
    logger.info("document %s no longer exists; nothing to process", document_id)
    return {
        "document_id": document_id,
        "status": "missing",
        "error": f"document {document_id} does not exist",
    }


def _configured_embedder() -> Embedder:
    try:
        return get_embedder(conf.embedder_setting())
    except ValueError as exc:
        raise BadConfiguration(f"DOCUMENTS_EMBEDDER is wrong: {exc}") from exc


def _source(document: Document) -> str | bytes:
    """A local path when the storage has one (no copy of a 50 MB file in memory), else the bytes."""
    if not document.file:
        raise FileMissing
    storage = document.file.storage
    try:
        path = storage.path(document.file.name)
    except NotImplementedError:
        try:
            with storage.open(document.file.name, "rb") as fh:
                data: bytes = fh.read()
                return data
        except FileNotFoundError:
            raise FileMissing from None
    if not Path(path).is_file():
        raise FileMissing
    return path


def _time_limit() -> float:
    return get_task(TASK_NAME).effective_timeout


def _is_time_limit(exc: BaseException) -> bool:
    module = sys.modules.get("dramatiq.middleware.time_limit")
    limit_exc = getattr(module, "TimeLimitExceeded", None)
    return limit_exc is not None and isinstance(exc, limit_exc)
