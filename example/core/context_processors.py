from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from example.core.runs import mode_word
from fusion_jobs import get_jobs_status


def jobs_status(request: HttpRequest) -> dict[str, Any]:
    """Every page shows which mode jobs run in, in one word: "broker" or "inline"."""
    status = get_jobs_status()
    return {"jobs_status": status, "jobs_mode_word": mode_word(status)}
