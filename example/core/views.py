from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from fusion_jobs.models import JobRun


def home(request: HttpRequest) -> HttpResponse:
    recent = JobRun.objects.only("id", "task_name", "status", "mode", "enqueued_at")[:8]
    return render(request, "core/home.html", {"recent_runs": recent})
