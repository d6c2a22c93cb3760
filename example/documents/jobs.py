"""The enqueue seam for document processing: ``kick_processing``, the one place an upload starts its job.

With a broker the document goes to a worker; without one (or when publishing fails) it is processed
right here. Either way it goes through ``fusion_jobs.enqueue`` where possible, so the run is recorded in
the admin. Call it after the upload's transaction has committed (the views use
``transaction.on_commit``): a worker must be able to read the document it is handed.
"""

from __future__ import annotations

import logging

from django.utils import timezone

import fusion_jobs
from fusion_jobs.models import HANDLE_INLINE

from .models import Document, DocumentStatus
from .processing import process_document
from .tasks import TASK_NAME

logger = logging.getLogger(__name__)

QUEUED = "queued to a worker"
INLINE = "processed inline"


def kick_processing(document_id: int) -> str:
    """Start processing a document and say how: :data:`QUEUED` or :data:`INLINE`.

    Publish failures are covered for every ``FUSION_JOBS_ON_PUBLISH_ERROR`` policy: "inline" (the
    default) makes ``enqueue`` run it inline itself; "raise" leaves a failed run in the admin and we do
    the work here, unrecorded; "outbox" keeps the run queued for the relay, so it is still "queued".
    """
    if not fusion_jobs.is_jobs_enabled():
        # Runs now (or when the caller's transaction commits), recorded as an inline run.
        fusion_jobs.enqueue(TASK_NAME, document_id=document_id)
        return INLINE
    try:
        handle = fusion_jobs.enqueue(TASK_NAME, document_id=document_id)
    except fusion_jobs.PublishError as exc:
        logger.warning("document %s: %s; processing it inline instead", document_id, exc)
        process_document(document_id)
        return INLINE
    if handle.mode == HANDLE_INLINE:  # the publish failed and enqueue() already ran it here
        return INLINE
    # So the page can show the queued run (and link to it) before a worker picks it up. Ownership is
    # decided later anyway: whichever run starts last owns the document (see processing.py).
    Document.objects.filter(pk=document_id).update(last_run_id=handle.run_id)
    return QUEUED


def mark_pending(document: Document) -> None:
    """Reset a document to pending before it is reprocessed; its chunks stay searchable until replaced."""
    Document.objects.filter(pk=document.pk).update(
        status=DocumentStatus.PENDING, error="", timings={}, updated_at=timezone.now()
    )
    document.status, document.error, document.timings = DocumentStatus.PENDING, "", {}
