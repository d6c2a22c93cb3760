"""Database-level Prometheus gauges: what waits, for how long, what is running, what failed lately.

The worker processes' own counters are served by ``rundramatiq --metrics-port``; these come from
the ``JobRun`` table, so one scrape of the web app answers "is anything stuck?" even when no
worker runs. Served in Prometheus text format (no dependency on prometheus-client) to a staff
session or to ``Authorization: Bearer <FUSION_JOBS_METRICS_TOKEN>``.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .conf import jobs_settings
from .models import FAILED_STATUSES, WAITING_STATUSES, JobRun, RunStatus
from .recording import db_alias
from .relay import MIN_AGE_SECONDS, due_runs, lost_runs

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the age buckets of waiting runs, as a Prometheus histogram's ``le``.
AGE_BUCKETS = (60, 300, 900, 3600, 21600, 86400)
FAILED_WINDOW = timedelta(minutes=5)


def _authorized(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    # Staff who may see the run history in the admin: the gauges show the same data.
    if user is not None and user.is_active and user.is_staff and user.has_perm("fusion_jobs.view_jobrun"):
        return True
    token = str(jobs_settings.METRICS_TOKEN or "")
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str) -> None:
        self.lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        self.lines.append(f"{name}{{{label_text}}} {value:g}" if labels else f"{name} {value:g}")


def database_metrics() -> str:
    """The gauges, in Prometheus text exposition format."""
    alias = db_alias()
    now = timezone.now()
    runs = JobRun.objects.using(alias)
    out = _Text()

    waiting = runs.filter(status__in=WAITING_STATUSES).exclude(next_attempt_at__gt=now)
    oldest = dict(waiting.values_list("queue").annotate(Min("enqueued_at")).order_by())
    totals = dict(waiting.values_list("queue").annotate(Count("pk")).order_by())
    buckets: dict[str, list[int]] = {}
    for queue in oldest:  # one count per bucket: the cumulative "at most this old"
        buckets[queue] = [
            waiting.filter(queue=queue, enqueued_at__gte=now - timedelta(seconds=bound)).count()
            for bound in AGE_BUCKETS
        ]
    out.family("fusion_jobs_runs_waiting", "gauge", "Runs queued or retrying and due, by queue.")
    for queue in sorted(oldest):
        out.sample("fusion_jobs_runs_waiting", totals[queue], queue=queue)
    out.family(
        "fusion_jobs_runs_waiting_by_age",
        "gauge",
        "Waiting runs enqueued at most max_age_seconds ago, by queue (cumulative, like histogram buckets).",
    )
    for queue in sorted(oldest):
        for bound, count in zip(AGE_BUCKETS, buckets[queue], strict=True):
            out.sample("fusion_jobs_runs_waiting_by_age", count, queue=queue, max_age_seconds=str(bound))
    out.family("fusion_jobs_runs_waiting_oldest_seconds", "gauge", "Age of the oldest waiting run, by queue.")
    for queue, first in sorted(oldest.items()):
        out.sample("fusion_jobs_runs_waiting_oldest_seconds", (now - first).total_seconds(), queue=queue)

    out.family("fusion_jobs_runs_running", "gauge", "Runs recorded as running, by queue.")
    running = runs.filter(status=RunStatus.RUNNING).values_list("queue").annotate(n=Count("pk")).order_by()
    for queue, count in sorted(running):
        out.sample("fusion_jobs_runs_running", count, queue=queue)

    out.family(
        "fusion_jobs_runs_failed_recent",
        "gauge",
        "Runs that ended failed or timed out in the last 5 minutes, by task and queue.",
    )
    failed = (
        runs.filter(status__in=FAILED_STATUSES, finished_at__gte=now - FAILED_WINDOW)
        .values_list("task_name", "queue")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for task, queue, count in sorted(failed):
        out.sample("fusion_jobs_runs_failed_recent", count, task=task, queue=queue)

    out.family(
        "fusion_jobs_relay_backlog",
        "gauge",
        "Runs the outbox relay has to publish now (due retries and deferred runs, runs lost on the way).",
    )
    backlog = (
        due_runs(alias, now).count() + lost_runs(alias, now - timedelta(seconds=MIN_AGE_SECONDS)).count()
    )
    out.sample("fusion_jobs_relay_backlog", backlog)
    return "\n".join(out.lines) + "\n"


@never_cache
@require_GET
def metrics(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Prometheus scrape target for the database gauges: staff session or bearer token."""
    if not _authorized(request):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="fusion-jobs metrics"'
        return response
    return HttpResponse(database_metrics(), content_type=CONTENT_TYPE)
