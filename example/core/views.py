"""The home page, and the favicon browsers ask for at /favicon.ico (the admin's pages link none)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static

from example.sandbox.views import visible_runs


def home(request: HttpRequest) -> HttpResponse:
    """The front page; its recent runs are the visitor's own, as on the sandbox."""
    recent = visible_runs(request).only("id", "task_name", "status", "mode", "result", "enqueued_at")[:8]
    return render(request, "core/home.html", {"recent_runs": recent})


def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponsePermanentRedirect(static("favicon.svg"))
