"""The admin's Workers page: every registered worker process and runcrons, live, stale or gone.

Read-only (the processes write their own rows); the queues runs wait on with no live consumer are
named at the top of the page, as on the dashboard.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from ..models import WorkerHeartbeat
from ..workers import LIVE, heartbeat_interval, unconsumed_warnings, worker_state
from .changelist import ReadOnlyAdmin
from .filters import WorkerStateFilter


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = [
        "state",
        "kind",
        "host",
        "pid",
        "queue_list",
        "threads",
        "processes",
        "version",
        "up",
        "seen",
        "runs_done",
        "runs_failed",
        "running",
    ]
    list_filter = [WorkerStateFilter, "kind", "host"]
    search_fields = ["host", "=pid"]
    ordering = ["stopped_at", "-last_seen_at"]
    list_per_page = 200
    readonly_fields = [f.name for f in WorkerHeartbeat._meta.fields]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm("fusion_jobs.view_jobrun")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        for line in unconsumed_warnings():
            messages.warning(request, line)
        refresh = max(5, round(2 * heartbeat_interval()))
        return super().changelist_view(request, {"refresh_seconds": refresh, **(extra_context or {})})

    @admin.display(description="state")
    def state(self, obj: WorkerHeartbeat) -> str:
        state = worker_state(obj, timezone.now())
        draining = " (draining)" if (obj.info or {}).get("draining") and state == LIVE else ""
        return format_html(
            '<span class="fj-worker-state fj-worker-{}" data-pid="{}" data-state="{}">{}{}</span>',
            state,
            obj.pid,
            state,
            state,
            draining,
        )

    @admin.display(description="queues")
    def queue_list(self, obj: WorkerHeartbeat) -> str:
        return ", ".join(obj.queues or []) or "-"

    @admin.display(description="up since", ordering="started_at")
    def up(self, obj: WorkerHeartbeat) -> str:
        return timesince(obj.started_at)

    @admin.display(description="last seen", ordering="last_seen_at")
    def seen(self, obj: WorkerHeartbeat) -> str:
        return f"{timesince(obj.last_seen_at)} ago"

    @admin.display(description="running now")
    def running(self, obj: WorkerHeartbeat) -> int:
        return int((obj.info or {}).get("running", len(obj.current_runs or [])))
