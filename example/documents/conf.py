"""The ``DOCUMENTS_*`` settings, typed, read on each access (defaults in ``example/core/conf.py``)."""

from __future__ import annotations

from example.core.conf import get


def embedder_setting() -> str:
    """``DOCUMENTS_EMBEDDER``: "auto" (WordLlama, else hashing), "wordllama", "minilm" or "hashing"."""
    return str(get("DOCUMENTS_EMBEDDER") or "auto")


def max_upload_bytes() -> int:
    """``DOCUMENTS_MAX_UPLOAD_BYTES``: larger files are refused at upload and by the job."""
    return int(get("DOCUMENTS_MAX_UPLOAD_BYTES"))


def embed_budget_seconds() -> float:
    """``DOCUMENTS_EMBED_BUDGET_SECONDS``: the whole job must fit in it (it sits under the 600 s cap)."""
    return float(get("DOCUMENTS_EMBED_BUDGET_SECONDS"))


def max_pages() -> int:
    """``DOCUMENTS_MAX_PAGES``: PDFs with more pages are refused at upload (the probe counts them) and by the job."""
    return int(get("DOCUMENTS_MAX_PAGES"))


def inline_budget_seconds() -> float:
    """``DOCUMENTS_INLINE_BUDGET_SECONDS``: the whole job's time when it runs inline, inside a web request."""
    return float(get("DOCUMENTS_INLINE_BUDGET_SECONDS"))


def inline_max_pages() -> int:
    """``DOCUMENTS_INLINE_MAX_PAGES``: longer PDFs need a worker; inline they fail at once with that message."""
    return int(get("DOCUMENTS_INLINE_MAX_PAGES"))


def upload_rate_limit() -> str:
    """``DOCUMENTS_UPLOAD_RATE_LIMIT``: uploads per user, ``"count/seconds"``."""
    return str(get("DOCUMENTS_UPLOAD_RATE_LIMIT"))


def max_request_bytes() -> int:
    """The largest upload request accepted before its body is read: the file limit plus form overhead."""
    return max_upload_bytes() + 256 * 1024


def search_min_score() -> float | None:
    """``DOCUMENTS_SEARCH_MIN_SCORE``: the relevance floor; None means the embedder's default (retrieval.py)."""
    value = get("DOCUMENTS_SEARCH_MIN_SCORE")
    return None if value is None or value == "" else float(value)


def no_worker_after_seconds() -> int:
    """``SANDBOX_NO_WORKER_AFTER_SECONDS``, shared with the sandbox: how long runs wait before the no-worker notice."""
    return int(get("SANDBOX_NO_WORKER_AFTER_SECONDS"))
