"""URLs for tests/integration/test_tracing.py and tests/integration/test_metrics.py: a view that enqueues, and fusion_jobs.urls."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from opentelemetry import trace

import fusion_jobs


def enqueue_view(request: HttpRequest) -> JsonResponse:
    """A web request's own span (as an instrumented Django would make), enqueuing inside it."""
    tracer = trace.get_tracer("tests.web")
    with tracer.start_as_current_span(f"GET {request.path}", kind=trace.SpanKind.SERVER):
        task = request.GET.get("task", "t-record")
        handle = fusion_jobs.enqueue(task, label=request.GET.get("label", "web"))
    return JsonResponse({"run_id": handle.run_id, "mode": handle.mode})


urlpatterns = [
    path("enqueue/", enqueue_view),
    path("jobs/", include("fusion_jobs.urls")),
]
