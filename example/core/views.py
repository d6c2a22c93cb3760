"""The home page, the favicon browsers ask for at /favicon.ico (the admin's pages link none), and the
health check the compose file's web service is probed with."""

from __future__ import annotations

from django.db import connection
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


def healthz(request: HttpRequest) -> HttpResponse:
    """200 "ok" when the web process serves and reaches its database (plain HTTP, never redirected)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    response = HttpResponse("ok", content_type="text/plain")
    response["Cache-Control"] = "no-store"
    return response
