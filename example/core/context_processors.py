from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from fusion_jobs import get_jobs_status


def jobs_status(request: HttpRequest) -> dict[str, Any]:
    """Every page shows which mode jobs run in (the seed's enabled/disabled badge)."""
    return {"jobs_status": get_jobs_status()}
