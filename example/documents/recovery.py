"""Mend documents left ``pending``/``processing`` by a process that died while it held them.

The job records every outcome on the document, but a killed process (an OOM-killed web process running
it inline, a worker lost for good) records nothing: the document would say "processing" forever.
fusion-jobs' ``fusion-jobs-sweep-stuck`` cron fails such runs and then sends ``stuck_runs_swept``; this
module listens and marks their documents failed, with a message that says to reprocess. It also catches
documents whose run ended without finishing them for any other reason, and those processed outside any
recorded run (a publish fallback) that have not moved for longer than the job's budget.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from fusion_jobs.models import TERMINAL_STATUSES, JobRun

from . import conf
from .models import Chunk, Document, DocumentStatus

logger = logging.getLogger(__name__)

INTERRUPTED = "processing was interrupted (its process stopped before it finished): reprocess it"
#: Beyond the job's own budget, how long an untracked document may sit unchanged before it is mended.
GRACE = timedelta(minutes=5)


def recover_stuck_documents(now: Any = None) -> int:
    """Fail unfinished documents whose run has ended (or that no run tracks and have gone quiet)."""
    now = now or timezone.now()
    run_ended = JobRun.objects.filter(pk=OuterRef("last_run_id"), status__in=TERMINAL_STATUSES)
    run_exists = JobRun.objects.filter(pk=OuterRef("last_run_id"))
    quiet_since = now - timedelta(seconds=conf.embed_budget_seconds()) - GRACE
    stuck = (
        Document.objects.filter(status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING])
        .filter(Q(Exists(run_ended)) | (~Exists(run_exists) & Q(updated_at__lt=quiet_since)))
        .values_list("pk", flat=True)
    )
    ids = list(stuck[:1000])
    if not ids:
        return 0
    Chunk.objects.filter(document_id__in=ids).delete()
    marked = Document.objects.filter(
        pk__in=ids, status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING]
    ).update(
        status=DocumentStatus.FAILED, error=INTERRUPTED, chunk_count=None, processed_at=now, updated_at=now
    )
    if marked:
        logger.warning("marked %d document(s) failed: their processing was interrupted", marked)
    return marked
