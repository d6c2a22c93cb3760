"""Run history in the Django admin: a fast read-only list and a detail page.

The list stays fast on a table of millions of rows: no date hierarchy (a DISTINCT over every
date), filters whose choices need no query (:mod:`.filters`), counts that never scan the whole
table (:mod:`.counting`), indexed search, the large JSON and text columns left out of the list
query (:class:`.changelist.RunChangeList`), and sorting only on indexed columns. Retry and cancel
are in :mod:`.actions`, the dashboard in :mod:`.dashboard`.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..api import is_jobs_enabled
from ..models import WAITING_STATUSES, JobRun, RunStatus
from ..recording import db_alias
from ..registry import all_tasks
from ..stats import format_duration
from .actions import RunActions
from .changelist import ReadOnlyAdmin, RunChangeList
from .counting import RunPaginator
from .dashboard import dashboard_view
from .display import (
    attempt_log_table,
    badge,
    dump_json,
    pretty_json,
    run_change_url,
    run_items,
    run_json_url,
)
from .filters import EnqueuedWithinFilter, QueueFilter, TaskFilter

RETRIES_SHOWN = 50
#: The JSON fields a run page can download whole (``<id>/json/<field>/``).
DOWNLOADABLE_JSON = ("kwargs", "result")


@admin.register(JobRun)
class JobRunAdmin(RunActions, ReadOnlyAdmin):
    list_display = (
        "short_id",
        "task_name",
        "status_badge",
        "mode",
        "attempts",
        "progress_bar",
        "enqueued_at",
        "started_at",
        "finished_at",
        "duration_display",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", TaskFilter, "mode", QueueFilter, EnqueuedWithinFilter)
    search_fields = ("=id", "task_name")
    search_help_text = "A run id (or its first 8+ characters), or part of a task name."
    sortable_by = ("enqueued_at", "finished_at")
    ordering = ("-enqueued_at",)
    list_per_page = 50
    list_max_show_all = 500
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = RunPaginator
    actions = ("retry_runs", "cancel_runs")
    change_form_template = "admin/fusion_jobs/jobrun/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "task_name",
                    "status_badge",
                    "mode",
                    "queue",
                    "enqueued_by",
                    "retry_of_link",
                    "retries_links",
                    "cron",
                    "scheduled_for",
                    "skip_reason",
                )
            },
        ),
        (
            "Attempts",
            {
                "fields": (
                    "attempts",
                    "lost_attempts",
                    "max_retries",
                    "execution_timeout",
                    "worker",
                    "attempt_log_table",
                )
            },
        ),
        (
            "Timing",
            {
                "fields": (
                    "enqueued_at",
                    "published_at",
                    "started_at",
                    "finished_at",
                    "duration_display",
                    "next_attempt_at",
                    "heartbeat_at",
                    "progress_bar",
                )
            },
        ),
        ("Input and outcome", {"fields": ("kwargs_pretty", "result_pretty", "error", "traceback_pre")}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)

    class Media:
        css = {"all": ("fusion_jobs/admin.css",)}

    # -- list ------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobRun]:
        return super().get_queryset(request).using(db_alias())

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type:
        return RunChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Only indexed lookups: a UUID (or a hex prefix of one, as a key range) or task names.

        The default ``UPPER(...) LIKE '%term%'`` over ``id::text`` and ``task_name`` scans the table.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        lowered = term.lower()
        names = [name for name in all_tasks() if lowered in name.lower()]
        condition = Q(task_name__in=[*names, term])
        hex_digits = term.replace("-", "").lower()
        if 4 <= len(hex_digits) < 32 and all(c in "0123456789abcdef" for c in hex_digits):
            low = uuid.UUID(hex_digits.ljust(32, "0"))
            high = uuid.UUID(hex_digits.ljust(32, "f"))
            condition |= Q(pk__gte=low, pk__lte=high)
        return queryset.filter(condition), False

    @admin.display(description="run")
    def short_id(self, obj: JobRun) -> SafeString:
        return format_html('<code title="{}">{}</code>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="status")
    def status_badge(self, obj: JobRun) -> SafeString:
        """The status; a run waiting for its time (``enqueue_at()``, a retry's backoff) says when."""
        waiting = obj.status in WAITING_STATUSES and obj.published_at is None
        if not (waiting and obj.next_attempt_at):
            return badge(obj.status)
        when = (
            timezone.localtime(obj.next_attempt_at)
            if timezone.is_aware(obj.next_attempt_at)
            else obj.next_attempt_at
        )
        return format_html(
            '{} <span class="fj-starts-at" title="{}">{} {}</span>',
            badge(obj.status),
            when.isoformat(timespec="seconds"),
            "starts at" if obj.status == RunStatus.QUEUED else "next attempt at",
            when.strftime("%Y-%m-%d %H:%M:%S"),
        )

    @admin.display(description="progress")
    def progress_bar(self, obj: JobRun) -> SafeString | str:
        percent = obj.progress_percent
        if percent is None and not obj.progress_stage:
            return "-"
        if percent is None:
            return format_html('<span class="fj-stage">{}</span>', obj.progress_stage)
        return format_html(
            '<progress class="fj-progress" max="100" value="{}" title="{} of {}">{}%</progress>'
            ' <span class="fj-stage">{} {}%</span>',
            f"{percent:.0f}",
            obj.progress_done,
            obj.progress_total,
            f"{percent:.0f}",
            obj.progress_stage,
            f"{percent:.0f}",
        )

    @admin.display(description="duration")
    def duration_display(self, obj: JobRun) -> str:
        duration = obj.duration
        return format_duration(None if duration is None else duration.total_seconds(), precise=True)

    # -- detail ----------------------------------------------------------------------------

    @admin.display(description="arguments")
    def kwargs_pretty(self, obj: JobRun) -> SafeString:
        return pretty_json(obj.kwargs, run_json_url(obj.pk, "kwargs"))

    @admin.display(description="result")
    def result_pretty(self, obj: JobRun) -> SafeString | str:
        return "-" if obj.result is None else pretty_json(obj.result, run_json_url(obj.pk, "result"))

    @admin.display(description="traceback")
    def traceback_pre(self, obj: JobRun) -> SafeString | str:
        if not obj.traceback:
            return "-"
        return format_html('<pre class="fj-pre fj-traceback">{}</pre>', obj.traceback)

    @admin.display(description="attempt log")
    def attempt_log_table(self, obj: JobRun) -> SafeString | str:
        return attempt_log_table(obj.attempt_log)

    @admin.display(description="retry of")
    def retry_of_link(self, obj: JobRun) -> SafeString | str:
        if obj.retry_of_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', run_change_url(obj.retry_of_id), obj.retry_of_id)

    @admin.display(description="retries")
    def retries_links(self, obj: JobRun) -> SafeString | str:
        retries = list(
            obj.retries.using(db_alias())
            .only("id", "status", "enqueued_at")
            .order_by("enqueued_at")[:RETRIES_SHOWN]
        )
        if not retries:
            return "-"
        items = run_items(
            (r.pk, str(r.pk), r.status, r.enqueued_at.isoformat(timespec="seconds")) for r in retries
        )
        return format_html('<ul class="fj-retries">{}</ul>', items)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            **(extra_context or {}),
            # Inline mode refuses every retry (DISABLED_RETRY_MESSAGE): offer no button that can only fail.
            "fj_can_retry": self.has_retry_permission(request) and is_jobs_enabled(),
            "fj_can_cancel": self.has_cancel_permission(request),
            "fj_cancellable": WAITING_STATUSES,
        }
        return super().change_view(request, object_id, form_url, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self.check_action_permissions(request)
        context = {
            **(extra_context or {}),
            "fj_dashboard_url": reverse("admin:fusion_jobs_jobrun_dashboard"),
        }
        return super().changelist_view(request, context)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(partial(dashboard_view, self)), name="fusion_jobs_jobrun_dashboard"),
            path("<path:object_id>/retry/", wrap(self.retry_view), name="fusion_jobs_jobrun_retry"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="fusion_jobs_jobrun_cancel"),
            path(
                "<path:object_id>/json/<str:field_name>/",
                wrap(self.json_view),
                name="fusion_jobs_jobrun_json",
            ),
            *super().get_urls(),
        ]

    def json_view(self, request: HttpRequest, object_id: str, field_name: str) -> HttpResponseBase:
        """A run's arguments or result as a JSON download (the run page shows only their start)."""
        run = self.get_run(request, object_id)
        if field_name not in DOWNLOADABLE_JSON or run is None:
            raise Http404("no such run or field")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        body = dump_json(getattr(run, field_name))
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-{field_name}.json"'
        return response
