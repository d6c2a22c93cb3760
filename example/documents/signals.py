"""Keep storage and the search cache in step with deleted documents, and mend documents whose run
fusion-jobs' stuck-run sweep has failed (``fusion_jobs.tasks.stuck_runs_swept``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from fusion_jobs.tasks import stuck_runs_swept

from . import search
from .models import Document
from .recovery import recover_stuck_documents


@receiver(post_delete, sender=Document, dispatch_uid="documents_delete_file")
def delete_file(sender: type[Document], instance: Document, **kwargs: Any) -> None:
    """Remove the uploaded file once the deletion has committed (a rolled-back delete keeps it)."""
    search.invalidate()
    if instance.file:
        storage, name = instance.file.storage, instance.file.name
        transaction.on_commit(lambda: storage.delete(name))


@receiver(stuck_runs_swept, dispatch_uid="documents_recover_stuck")
def recover_after_sweep(sender: Any, marked: int = 0, **kwargs: Any) -> None:
    """Runs after every sweep, not only when it marked runs: a document can outlive its run otherwise too."""
    recover_stuck_documents()
