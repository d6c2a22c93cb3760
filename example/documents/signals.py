"""Keep storage and the search cache in step with deleted documents."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from . import search
from .models import Document


@receiver(post_delete, sender=Document, dispatch_uid="documents_delete_file")
def delete_file(sender: type[Document], instance: Document, **kwargs: Any) -> None:
    """Remove the uploaded file once the deletion has committed (a rolled-back delete keeps it)."""
    search.invalidate()
    if instance.file:
        storage, name = instance.file.storage, instance.file.name
        transaction.on_commit(lambda: storage.delete(name))
