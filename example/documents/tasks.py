"""The ``process-chat-document`` task: extract, chunk and embed an uploaded document, on fusion-jobs.

Autodiscovered by fusion-jobs (``<app>.tasks``), so both the web process (inline runs) and
``manage.py rundramatiq`` know it. The job must fit ``DOCUMENTS_EMBED_BUDGET_SECONDS`` (540 s), under
its 600 s cap: an embedder whose estimate does not fit is refused before embedding. ``bench/documents.py``
measures the 1000-page job. Inline, inside a web request, the tighter ``DOCUMENTS_INLINE_*`` budget
applies instead. The body never raises because of the
document: the outcome, failures included, is recorded on the Document and returned as the run's result
(see :mod:`example.documents.processing`).
"""

from __future__ import annotations

from typing import Any

import fusion_jobs

from .processing import TASK_NAME, process_document

__all__ = ["TASK_NAME", "process_chat_document"]


@fusion_jobs.task(
    name=TASK_NAME,
    execution_timeout="600s",
    # Retries only ever see what escapes process_document: a database outage while recording, or a
    # lost worker. A timed-out document would time out again, so that is not retried.
    max_retries=2,
    retry_on_timeout=False,
    description="Extract, chunk and embed an uploaded document so it can be searched.",
)
def process_chat_document(document_id: int) -> dict[str, Any]:
    """Process one uploaded document; returns its outcome (``status`` "ready" or "failed", ...)."""
    return process_document(document_id)
