"""What the pages and ``status.json`` say about a document: its status joined with its job run's progress.

The progress itself lives on the ``JobRun`` (``fusion_jobs.report_progress``); the document only
knows which run is its last (``last_run_id``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fusion_jobs.models import JobRun, RunMode, RunStatus

from .models import Document, DocumentStatus

# Where each stage starts and ends on one overall bar; roughly the default embedder's shares of the time.
STAGE_SPAN: dict[str, tuple[float, float]] = {
    "load": (0, 2),
    "extract": (2, 45),
    "chunk": (45, 50),
    "embed": (50, 95),
    "store": (95, 100),
}
STAGE_LABELS = {
    "load": "Loading the embedder",
    "extract": "Extracting text",
    "chunk": "Cutting into chunks",
    "embed": "Embedding",
    "store": "Saving chunks",
}
STAGE_UNITS = {"extract": "pages", "embed": "chunks", "store": "chunks"}
#: The stages shown with their timings on the document page, in order.
TIMED_STAGES = ("load", "extract", "chunk", "embed", "store")


def runs_for(documents: Iterable[Document]) -> dict[str, JobRun]:
    """The last run of each document, in one query."""
    ids = {doc.last_run_id for doc in documents if doc.last_run_id}
    if not ids:
        return {}
    return {str(run.pk): run for run in JobRun.objects.filter(pk__in=ids)}


def run_of(document: Document) -> JobRun | None:
    if not document.last_run_id:
        return None
    return JobRun.objects.filter(pk=document.last_run_id).first()


def progress(document: Document, run: JobRun | None) -> dict[str, Any]:
    """``{"label", "percent", "stage", "done", "total"}`` for the progress bar of a document."""
    if document.status == DocumentStatus.READY:
        return {"label": "Done", "percent": 100.0, "stage": "", "done": None, "total": None}
    if document.status == DocumentStatus.FAILED:
        return {"label": "Failed", "percent": None, "stage": "", "done": None, "total": None}
    if run is None:
        return {"label": "Waiting to start", "percent": 0.0, "stage": "", "done": None, "total": None}
    if run.status == RunStatus.QUEUED:
        label = "Waiting for a worker" if run.mode == RunMode.WORKER else "Starting"
        return {"label": label, "percent": 0.0, "stage": "", "done": None, "total": None}
    if run.status == RunStatus.RETRYING:
        return {"label": "Retrying after an error", "percent": 0.0, "stage": "", "done": None, "total": None}
    stage, done, total = run.progress_stage, run.progress_done, run.progress_total
    start, end = STAGE_SPAN.get(stage, (0.0, 0.0))
    fraction = min(1.0, done / total) if done is not None and total else 0.0
    label = STAGE_LABELS.get(stage, "Starting")
    if done is not None and total:
        label = f"{label}: {done:,} / {total:,} {STAGE_UNITS.get(stage, '')}".rstrip()
    return {
        "label": label,
        "percent": round(start + (end - start) * fraction, 1),
        "stage": stage,
        "done": done,
        "total": total,
    }


def stalled(document: Document, run: JobRun | None) -> str:
    """Why an unfinished document will not move any more (its run ended without finishing it), or ""."""
    if not document.in_progress or run is None or not run.is_terminal:
        return ""
    detail = f": {run.error}" if run.error else ""
    return f"its job run ended ({run.get_status_display().lower()}) without finishing it{detail}"


def is_active(document: Document, run: JobRun | None) -> bool:
    """Still worth polling: unfinished, and its run (if recorded yet) has not ended."""
    return document.in_progress and not stalled(document, run)


def stage_rows(document: Document) -> list[dict[str, Any]]:
    """One row per stage for the document page: its seconds, or None while not done."""
    timings = document.timings or {}
    return [
        {"stage": stage, "label": STAGE_LABELS[stage], "seconds": timings.get(stage)}
        for stage in TIMED_STAGES
    ]


def payload(document: Document, run: JobRun | None) -> dict[str, Any]:
    """The body of ``/documents/<id>/status.json``."""
    return {
        "id": document.pk,
        "title": document.title,
        "status": document.status,
        "status_display": document.get_status_display(),
        "active": is_active(document, run),
        "error": document.error,
        "stalled": stalled(document, run),
        "page_count": document.page_count,
        "chunk_count": document.chunk_count,
        "embedder": document.embedder_name,
        "embedder_version": document.embedder_version,
        "timings": document.timings or {},
        "processed_at": document.processed_at.isoformat() if document.processed_at else None,
        "progress": progress(document, run),
        "run": (
            {"id": str(run.pk), "status": run.status, "mode": run.mode, "attempts": run.attempts}
            if run is not None
            else None
        ),
    }
