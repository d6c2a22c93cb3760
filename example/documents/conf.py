"""The ``DOCUMENTS_*`` settings, read on each access so ``override_settings`` and the test ``settings``
fixture take effect without a restart."""

from __future__ import annotations

from django.conf import settings

from .extract import DEFAULT_MAX_BYTES

DEFAULT_EMBEDDER = "auto"
DEFAULT_EMBED_BUDGET_SECONDS = 540.0


def embedder_setting() -> str:
    """``DOCUMENTS_EMBEDDER``: "auto" (WordLlama, else hashing), "wordllama", "minilm" or "hashing"."""
    return str(getattr(settings, "DOCUMENTS_EMBEDDER", DEFAULT_EMBEDDER) or DEFAULT_EMBEDDER)


def max_upload_bytes() -> int:
    """``DOCUMENTS_MAX_UPLOAD_BYTES``: larger files are refused at upload and by the job."""
    return int(getattr(settings, "DOCUMENTS_MAX_UPLOAD_BYTES", DEFAULT_MAX_BYTES))


def embed_budget_seconds() -> float:
    """``DOCUMENTS_EMBED_BUDGET_SECONDS``: the whole job must fit in it (it sits under the 600 s cap)."""
    return float(getattr(settings, "DOCUMENTS_EMBED_BUDGET_SECONDS", DEFAULT_EMBED_BUDGET_SECONDS))
