"""The ``DOCUMENTS_*`` settings, read on each access so ``override_settings`` and the test ``settings``
fixture take effect without a restart."""

from __future__ import annotations

from django.conf import settings

from .extract import DEFAULT_MAX_BYTES, DEFAULT_MAX_PAGES

DEFAULT_EMBEDDER = "auto"
DEFAULT_EMBED_BUDGET_SECONDS = 540.0
DEFAULT_INLINE_BUDGET_SECONDS = 60.0
DEFAULT_INLINE_MAX_PAGES = 1000
DEFAULT_UPLOAD_RATE_LIMIT = "20/3600"


def embedder_setting() -> str:
    """``DOCUMENTS_EMBEDDER``: "auto" (WordLlama, else hashing), "wordllama", "minilm" or "hashing"."""
    return str(getattr(settings, "DOCUMENTS_EMBEDDER", DEFAULT_EMBEDDER) or DEFAULT_EMBEDDER)


def max_upload_bytes() -> int:
    """``DOCUMENTS_MAX_UPLOAD_BYTES``: larger files are refused at upload and by the job."""
    return int(getattr(settings, "DOCUMENTS_MAX_UPLOAD_BYTES", DEFAULT_MAX_BYTES))


def embed_budget_seconds() -> float:
    """``DOCUMENTS_EMBED_BUDGET_SECONDS``: the whole job must fit in it (it sits under the 600 s cap)."""
    return float(getattr(settings, "DOCUMENTS_EMBED_BUDGET_SECONDS", DEFAULT_EMBED_BUDGET_SECONDS))


def max_pages() -> int:
    """``DOCUMENTS_MAX_PAGES``: PDFs with more pages are refused at upload (the probe counts them) and by the job."""
    return int(getattr(settings, "DOCUMENTS_MAX_PAGES", DEFAULT_MAX_PAGES))


def inline_budget_seconds() -> float:
    """``DOCUMENTS_INLINE_BUDGET_SECONDS``: the whole job's time when it runs inline, inside a web request."""
    return float(getattr(settings, "DOCUMENTS_INLINE_BUDGET_SECONDS", DEFAULT_INLINE_BUDGET_SECONDS))


def inline_max_pages() -> int:
    """``DOCUMENTS_INLINE_MAX_PAGES``: longer PDFs need a worker; inline they fail at once with that message."""
    return int(getattr(settings, "DOCUMENTS_INLINE_MAX_PAGES", DEFAULT_INLINE_MAX_PAGES))


def upload_rate_limit() -> str:
    """``DOCUMENTS_UPLOAD_RATE_LIMIT``: uploads per user, ``"count/seconds"``."""
    return str(getattr(settings, "DOCUMENTS_UPLOAD_RATE_LIMIT", DEFAULT_UPLOAD_RATE_LIMIT))


def max_request_bytes() -> int:
    """The largest upload request accepted before its body is read: the file limit plus form overhead."""
    return max_upload_bytes() + 256 * 1024


def search_min_score() -> float | None:
    """``DOCUMENTS_SEARCH_MIN_SCORE``: the relevance floor; None means the embedder's default (retrieval.py)."""
    value = getattr(settings, "DOCUMENTS_SEARCH_MIN_SCORE", None)
    return None if value is None or value == "" else float(value)


def no_worker_after_seconds() -> int:
    """``SANDBOX_NO_WORKER_AFTER_SECONDS``, shared with the sandbox: how long runs wait before the no-worker notice."""
    return int(getattr(settings, "SANDBOX_NO_WORKER_AFTER_SECONDS", 60))
