"""Run history in the Django admin: a fast read-only list, a detail page, retry and cancel, a dashboard.

Everything shown from a run goes through ``format_html``/``format_html_join`` or template
auto-escaping, because arguments, results and tracebacks can hold user input (django_dramatiq's
``mark_safe`` is a stored XSS). Retry and cancel each need their own permission, change nothing
on GET and ask for confirmation before a POST with a CSRF token does anything.

Retry always *queues* the new run. With jobs disabled (no broker, or ``FUSION_JOBS_EAGER``) the
admin refuses with a message instead: running the task inline would block the admin request
(tasks may run for minutes) and a queued run would wait for a worker that does not exist.

The list stays fast on a table of millions of rows: no date hierarchy (a DISTINCT over every
date), filters whose choices need no query, counts that never scan the whole table
(:class:`RunPaginator`), indexed search, the large JSON and text columns left out of the list
query, and sorting only on indexed columns.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .admin_changelist import StorableFiltersChangeList
from .admin_workers import WorkerHeartbeatAdmin
from .api import RunHandle, get_jobs_status, is_jobs_enabled, retry_run
from .exceptions import PayloadError, TaskArgumentsError, UnknownTaskError
from .models import TERMINAL_STATUSES, JobRun, JobsDashboard, RunStatus, WorkerHeartbeat
from .recording import cancel as cancel_runs_by_id
from .recording import db_alias
from .registry import all_tasks
from .rollup import Cell
from .scheduler import admin as _schedule_admin  # noqa: F401  (registers CronSchedule)
from .stats import DashboardCharts, dashboard_charts
from .utils import clean_text
from .workers import unconsumed_warnings

#: Badge colours, readable with white text in the light and the dark admin theme.
STATUS_COLOURS: dict[str, str] = {
    RunStatus.QUEUED: "#6c757d",
    RunStatus.RUNNING: "#0d6efd",
    RunStatus.RETRYING: "#b35c00",
    RunStatus.SUCCEEDED: "#198754",
    RunStatus.FAILED: "#c82333",
    RunStatus.TIMED_OUT: "#8e2d8e",
    RunStatus.CANCELLED: "#495057",
    RunStatus.SKIPPED: "#5a6b7b",
}
#: Columns the list needs; kwargs, result, traceback and the attempt log stay out of its query.
LIST_FIELDS = (
    "id",
    "task_name",
    "queue",
    "status",
    "mode",
    "attempts",
    "lost_attempts",
    "progress_stage",
    "progress_done",
    "progress_total",
    "enqueued_at",
    "started_at",
    "finished_at",
    "published_at",  # with next_attempt_at: a waiting run's start time in the status column
    "next_attempt_at",
)
CANCELLABLE = (RunStatus.QUEUED, RunStatus.RETRYING)
#: Statuses of runs that executed, which have a duration and count towards the failure rate.
EXECUTED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT)
FAILED_STATUSES = (RunStatus.FAILED, RunStatus.TIMED_OUT)
#: A bulk retry publishes one message per run inside the admin request: keep that bounded.
BULK_RETRY_LIMIT = 500
#: Retries committed (and so published) together after the first one has gone through.
RETRY_CHUNK = 50
CANCEL_BATCH = 1000
#: Counts up to this many rows are exact; above it the list shows PostgreSQL's estimate.
EXACT_COUNT_LIMIT = 10_000
CONFIRM_SAMPLE = 20
RETRIES_SHOWN = 50
DISABLED_RETRY_MESSAGE = (
    "Retry needs background jobs: {reason}. A retry is always queued for a worker, never run "
    "inside this admin request; configure FUSION_JOBS_BROKER_URL (and turn FUSION_JOBS_EAGER off)."
)


# --- Counting without scanning a million rows -------------------------------------------------


def estimated_count(queryset: QuerySet[Any], exact_limit: int = EXACT_COUNT_LIMIT) -> int:
    """The row count of ``queryset``: exact when small, PostgreSQL's estimate when large.

    ``COUNT(*)`` on PostgreSQL reads every matching row, so the changelist would pay a full scan
    per page view. Unfiltered, the table's ``pg_class.reltuples`` (kept by autovacuum/ANALYZE) is
    used once it is over ``exact_limit``. Otherwise at most ``exact_limit + 1`` rows are counted,
    and past that the planner's estimate is used. Other databases count exactly.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return queryset.count()
    if not queryset.query.where:
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
            row = cursor.fetchone()
        if row and row[0] is not None and row[0] >= exact_limit:
            return int(row[0])
    bounded = queryset.order_by()[: exact_limit + 1].count()
    if bounded <= exact_limit:
        return bounded
    return max(bounded, _planner_rows(queryset))


def _planner_rows(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.order_by().query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class RunPaginator(Paginator):
    """A paginator whose count is :func:`estimated_count` (pages past the real end are empty)."""

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return estimated_count(self.object_list)
        return super().count


# --- Filters whose choices cost no query ------------------------------------------------------


class TaskFilter(admin.SimpleListFilter):
    """Choices from the task registry, not a ``SELECT DISTINCT task_name`` over the whole table."""

    title = "task"
    parameter_name = "task_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = set(all_tasks())
        current = self.value()
        if current:
            names.add(current)  # a task no longer declared in code still shows as selected
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(task_name=value) if value else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        queues = {task_obj.effective_queue for task_obj in all_tasks().values()}
        current = self.value()
        if current:
            queues.add(current)
        return [(name, name) for name in sorted(queues)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(queue=value) if value else queryset


class EnqueuedWithinFilter(admin.SimpleListFilter):
    """Relative date ranges on the indexed ``enqueued_at``, in place of a date hierarchy.

    Any absolute range also works from the URL: ``?enqueued_at__gte=2026-01-01&enqueued_at__lt=2026-02-01``.
    """

    title = "enqueued"
    parameter_name = "enqueued"
    RANGES = {
        "1h": ("Past hour", timedelta(hours=1)),
        "24h": ("Past 24 hours", timedelta(days=1)),
        "7d": ("Past 7 days", timedelta(days=7)),
        "30d": ("Past 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _delta) in self.RANGES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in self.RANGES:
            return queryset.filter(enqueued_at__gte=timezone.now() - self.RANGES[value][1])
        return queryset


# --- Formatting -------------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def badge(status: str) -> SafeString:
    label = RunStatus(status).label if status in RunStatus.values else status
    return format_html(
        '<span class="fj-badge fj-status-{}" style="background-color:{}">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#6c757d"),
        label,
    )


#: Above this many characters the run page shows the start of a JSON value and links to all of it:
#: a run with 20 MB of arguments must not render a 20 MB page.
JSON_DISPLAY_LIMIT = 64 * 1024
#: The JSON fields a run page can download whole (``<id>/json/<field>/``).
DOWNLOADABLE_JSON = ("kwargs", "result")


def pretty_json(value: Any, download_url: str = "") -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) <= JSON_DISPLAY_LIMIT:
        return format_html('<pre class="fj-pre">{}</pre>', text)
    return format_html(
        '<pre class="fj-pre">{}\n…</pre><p class="fj-truncated">Showing the first {} characters of {}. '
        '<a href="{}" download>Download the whole JSON</a></p>',
        text[:JSON_DISPLAY_LIMIT],
        f"{JSON_DISPLAY_LIMIT:,}",
        f"{len(text):,}",
        download_url,
    )


def run_json_url(run_id: Any, field_name: str) -> str:
    return reverse("admin:fusion_jobs_jobrun_json", args=[str(run_id), field_name])


def run_change_url(run_id: Any) -> str:
    return reverse("admin:fusion_jobs_jobrun_change", args=[str(run_id)])


# --- Read-only model admin --------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Run history is written by the workers only: nobody adds, edits or deletes it by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@dataclass
class ActionPlan:
    """What a confirmation page shows and a confirmed POST does."""

    action: str
    verb: str
    eligible: int
    ineligible: int
    sample: list[JobRun]
    problem: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class RetryOutcome:
    handles: list[RunHandle] = field(default_factory=list)
    unknown: int = 0
    refused: int = 0
    unpublished: int = 0
    not_tried: int = 0


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
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
        waiting = obj.status in (RunStatus.QUEUED, RunStatus.RETRYING) and obj.published_at is None
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
        return format_seconds(duration.total_seconds()) if duration is not None else "-"

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
        entries = [entry for entry in obj.attempt_log or [] if isinstance(entry, dict)]
        if not entries:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.get("attempt", ""),
                    entry.get("outcome", ""),
                    entry.get("worker", ""),
                    entry.get("started_at") or "",
                    entry.get("ended_at") or "",
                    entry.get("error", ""),
                )
                for entry in entries
            ),
        )
        return format_html(
            '<table class="fj-attempts"><thead><tr><th>attempt</th><th>outcome</th><th>worker</th>'
            "<th>started</th><th>ended</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

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
        items = format_html_join(
            "",
            '<li><a href="{}">{}</a> {} {}</li>',
            (
                (run_change_url(r.pk), r.pk, badge(r.status), r.enqueued_at.isoformat(timespec="seconds"))
                for r in retries
            ),
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
            "fj_cancellable": CANCELLABLE,
        }
        return super().change_view(request, object_id, form_url, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST":
            requested = set(request.POST.getlist("action"))
            if ("retry_runs" in requested and not self.has_retry_permission(request)) or (
                "cancel_runs" in requested and not self.has_cancel_permission(request)
            ):
                raise PermissionDenied
        context = {
            **(extra_context or {}),
            "fj_dashboard_url": reverse("admin:fusion_jobs_jobrun_dashboard"),
        }
        return super().changelist_view(request, context)

    # -- permissions -----------------------------------------------------------------------

    def has_retry_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_jobrun")

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_jobrun")

    # -- actions ---------------------------------------------------------------------------

    @admin.action(description="Retry selected runs (new runs, same arguments)", permissions=["retry"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[JobRun]) -> HttpResponse | None:
        plan = self._plan_retry(queryset)
        if plan.problem:
            self.message_user(request, plan.problem, messages.ERROR)
            return None
        if request.POST.get("post") != "yes":
            return self._confirmation(request, plan)
        outcome = self._do_retry(request, queryset.filter(status__in=TERMINAL_STATUSES))
        self._report_retry(request, outcome, plan.ineligible)
        return None

    @admin.action(description="Cancel selected runs (queued or retrying)", permissions=["cancel"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[JobRun]) -> HttpResponse | None:
        plan = self._plan_cancel(queryset)
        if request.POST.get("post") != "yes":
            return self._confirmation(request, plan)
        cancelled = self._do_cancel(queryset)
        self._report_cancel(request, cancelled, plan)
        return None

    def _plan_retry(self, queryset: QuerySet[JobRun]) -> ActionPlan:
        selected = estimated_count(queryset)
        eligible = _bounded_count(queryset.filter(status__in=TERMINAL_STATUSES), BULK_RETRY_LIMIT)
        plan = ActionPlan(
            action="retry_runs",
            verb="retry",
            eligible=eligible,
            ineligible=max(0, selected - eligible),
            sample=_sample(queryset),
            notes=[
                "Each retry is a new run with the same task and arguments, linked to its original "
                "and queued for a worker.",
                "Runs still queued, running or retrying are left alone.",
            ],
        )
        if not is_jobs_enabled():
            plan.problem = DISABLED_RETRY_MESSAGE.format(reason=get_jobs_status()["reason"])
        elif eligible > BULK_RETRY_LIMIT:
            plan.problem = (
                f"More than {BULK_RETRY_LIMIT} finished runs are selected; retry at most "
                f"{BULK_RETRY_LIMIT} at a time (narrow the filter)."
            )
        elif eligible == 0:
            plan.problem = "None of the selected runs has finished, so there is nothing to retry."
        return plan

    def _plan_cancel(self, queryset: QuerySet[JobRun]) -> ActionPlan:
        selected = estimated_count(queryset)
        eligible = queryset.filter(status__in=CANCELLABLE).order_by().count()
        return ActionPlan(
            action="cancel_runs",
            verb="cancel",
            eligible=eligible,
            ineligible=selected - eligible,
            sample=_sample(queryset),
            problem="" if eligible else "None of the selected runs is queued or retrying.",
            notes=[
                "Queued and retrying runs are marked cancelled; a worker skips their message.",
                "A run that is already running is not interrupted and is left alone.",
            ],
        )

    def _do_retry(self, request: HttpRequest, runs: QuerySet[JobRun]) -> RetryOutcome:
        """Queue the retries in small committed chunks, the first of one run.

        Each retry is published when its chunk commits. If the broker does not take them (down,
        or hanging until the publish timeout), the request stops there instead of paying that
        timeout once per selected run: what was created stays queued for the outbox relay, and
        the rest is not retried. Inside a request-wide transaction (ATOMIC_REQUESTS) publishing
        waits for the end of the request, so everything is created at once.
        """
        alias = db_alias()
        username = request.user.get_username() or f"user {request.user.pk}"
        ids = [str(pk) for pk in runs.order_by().values_list("pk", flat=True)[:BULK_RETRY_LIMIT]]
        outcome = RetryOutcome()
        observable = not connections[alias].in_atomic_block
        position, size = 0, 1 if observable else len(ids)
        while position < len(ids):
            chunk = ids[position : position + size]
            position += len(chunk)
            created = []
            with transaction.atomic(using=alias):
                for run_id in chunk:
                    try:
                        created.append(retry_run(run_id, requested_by=username))
                    except UnknownTaskError:
                        outcome.unknown += 1
                    except (TaskArgumentsError, PayloadError):
                        outcome.refused += 1
            outcome.handles.extend(created)
            if observable and created:
                outcome.unpublished = (
                    JobRun.objects.using(alias)
                    .filter(pk__in=[h.run_id for h in created], published_at__isnull=True)
                    .count()
                )
                if outcome.unpublished:
                    outcome.not_tried = len(ids) - position
                    break
            size = RETRY_CHUNK
        return outcome

    def _do_cancel(self, queryset: QuerySet[JobRun]) -> int:
        cancellable = queryset.filter(status__in=CANCELLABLE).order_by()
        total = 0
        while True:
            batch = [str(pk) for pk in cancellable.values_list("pk", flat=True)[:CANCEL_BATCH]]
            if not batch:
                return total
            done = cancel_runs_by_id(batch)
            total += done
            if done == 0:
                return total

    def _report_retry(self, request: HttpRequest, outcome: RetryOutcome, ineligible: int) -> None:
        queued = len(outcome.handles)
        if queued:
            self.message_user(
                request,
                f"Queued {queued} retr{'y' if queued == 1 else 'ies'}, linked to the original run(s).",
                messages.SUCCESS,
            )
        if outcome.unpublished:
            self.message_user(
                request,
                f"The broker did not accept {outcome.unpublished} of them; they stay queued and the outbox "
                f"relay publishes them when it can. {outcome.not_tried} other run(s) were not retried: "
                "try again once the broker is back.",
                messages.WARNING,
            )
        if outcome.unknown:
            self.message_user(
                request,
                f"{outcome.unknown} run(s) not retried: their task is no longer registered.",
                messages.WARNING,
            )
        if outcome.refused:
            self.message_user(
                request,
                f"{outcome.refused} run(s) not retried: their arguments no longer fit the task, or the run "
                "was left by a rejected broker message.",
                messages.WARNING,
            )
        if ineligible:
            self.message_user(
                request,
                f"{ineligible} run(s) not retried: still queued, running or retrying.",
                messages.WARNING,
            )

    def _report_cancel(self, request: HttpRequest, cancelled: int, plan: ActionPlan) -> None:
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} run(s).", messages.SUCCESS)
        else:
            self.message_user(
                request, "No run was cancelled (none was queued or retrying).", messages.WARNING
            )
        if plan.ineligible:
            self.message_user(
                request,
                f"{plan.ineligible} run(s) left alone: already running or finished.",
                messages.WARNING,
            )

    def _confirmation(
        self, request: HttpRequest, plan: ActionPlan, *, run: JobRun | None = None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Confirm: {plan.verb} {'this run' if run else 'the selected runs'}",
            "opts": self.opts,
            "plan": plan,
            "run": run,
            "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": run_change_url(run.pk) if run else request.get_full_path(),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/fusion_jobs/jobrun/confirm_action.html", context)

    # -- single-run views ------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name="fusion_jobs_jobrun_dashboard"),
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
        run = self._get_run(request, object_id)
        if field_name not in DOWNLOADABLE_JSON or run is None:
            raise Http404("no such run or field")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        body = json.dumps(getattr(run, field_name), indent=2, ensure_ascii=False, sort_keys=True, default=str)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-{field_name}.json"'
        return response

    def _get_run(self, request: HttpRequest, object_id: str) -> JobRun | None:
        try:
            return self.get_object(request, unquote(object_id))
        except ValueError:
            return None

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        self.message_user(
            request, f"No job run with id {object_id!r}; perhaps it was pruned.", messages.WARNING
        )
        return HttpResponseRedirect(reverse("admin:fusion_jobs_jobrun_changelist"))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if not (self.has_view_permission(request) and self.has_retry_permission(request)):
            raise PermissionDenied
        run = self._get_run(request, object_id)
        if run is None:
            return self._missing(request, object_id)
        plan = self._plan_retry(self.get_queryset(request).filter(pk=run.pk))
        if request.method != "POST":
            return self._confirmation(request, plan, run=run)
        if plan.problem:
            self.message_user(request, plan.problem, messages.ERROR)
            return HttpResponseRedirect(run_change_url(run.pk))
        outcome = self._do_retry(request, self.get_queryset(request).filter(pk=run.pk))
        if not outcome.handles or outcome.unpublished:
            self._report_retry(request, outcome, 0)
        else:
            self.message_user(request, "Queued a retry of this run (a new run, linked to the original).")
        if not outcome.handles:
            return HttpResponseRedirect(run_change_url(run.pk))
        return HttpResponseRedirect(run_change_url(outcome.handles[0].run_id))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if not (self.has_view_permission(request) and self.has_cancel_permission(request)):
            raise PermissionDenied
        run = self._get_run(request, object_id)
        if run is None:
            return self._missing(request, object_id)
        queryset = self.get_queryset(request).filter(pk=run.pk)
        plan = self._plan_cancel(queryset)
        if request.method != "POST":
            return self._confirmation(request, plan, run=run)
        if plan.problem:
            self.message_user(request, plan.problem, messages.ERROR)
        else:
            self._report_cancel(request, self._do_cancel(queryset), plan)
        return HttpResponseRedirect(run_change_url(run.pk))

    # -- dashboard -------------------------------------------------------------------------

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        key = request.GET.get("window", "1h")
        if key not in DASHBOARD_WINDOWS:
            key = "1h"
        label, window = DASHBOARD_WINDOWS[key]
        # No task name holds a NUL (which PostgreSQL refuses in a query): such a filter matches nothing.
        task_filter = clean_text(request.GET.get("task", "")) or None
        charts = dashboard_charts(key, task_name=task_filter)
        # A week of runs is too many to count and sort per request: its table comes from the rollup.
        stats = dashboard_stats(
            window, now=charts.now, summary=charts if key in ROLLUP_TABLE_WINDOWS else None
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Jobs dashboard",
            "opts": self.opts,
            "stats": stats,
            "charts": charts,
            "task_filter": task_filter,
            "window_key": key,
            "window_label": label,
            "windows": [(k, v[0]) for k, v in DASHBOARD_WINDOWS.items()],
            "jobs": get_jobs_status(),
            "worker_warnings": unconsumed_warnings(),
            "workers_url": reverse("admin:fusion_jobs_workerheartbeat_changelist"),
            "changelist_url": reverse("admin:fusion_jobs_jobrun_changelist"),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/fusion_jobs/dashboard.html", context)


class RunChangeList(StorableFiltersChangeList):
    """The changelist without the big columns: kwargs, result, traceback and attempt log."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).only(*LIST_FIELDS)


def _bounded_count(queryset: QuerySet[Any], limit: int) -> int:
    return queryset.order_by()[: limit + 1].count()


def _sample(queryset: QuerySet[JobRun]) -> list[JobRun]:
    return list(queryset.only("id", "task_name", "status", "enqueued_at")[:CONFIRM_SAMPLE])


# --- Dashboard --------------------------------------------------------------------------------

DASHBOARD_WINDOWS = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last day", timedelta(days=1)),
    "7d": ("Last week", timedelta(days=7)),
}
#: Windows whose per-task table is read from the rollup (fusion_jobs.rollup), not counted from runs.
ROLLUP_TABLE_WINDOWS = frozenset({"7d"})
#: The SQLite/MySQL fallback computes percentiles in Python over at most this many runs.
PYTHON_PERCENTILE_ROWS = 200_000


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks: what ``percentile_cont`` returns."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass
class TaskRow:
    task_name: str
    counts: dict[str, int] = field(default_factory=dict)
    finished: int = 0
    failed: int = 0
    p50: float | None = None
    p95: float | None = None

    @property
    def enqueued(self) -> int:
        return sum(self.counts.values())

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None

    def cells(self, statuses: Iterable[str]) -> list[int]:
        return [self.counts.get(status, 0) for status in statuses]


@dataclass
class DashboardStats:
    window: timedelta
    since: datetime
    now: datetime
    tasks: list[TaskRow]
    statuses: list[str]
    total: TaskRow
    running: int
    queued: int
    retrying: int
    oldest_queued: JobRun | None
    percentiles_from: str

    @property
    def throughput_per_minute(self) -> float:
        return self.total.finished / (self.window.total_seconds() / 60)

    @property
    def oldest_queued_age(self) -> float | None:
        if self.oldest_queued is None:
            return None
        return (self.now - self.oldest_queued.enqueued_at).total_seconds()

    def status_headers(self) -> list[SafeString]:
        return [badge(status) for status in self.statuses]

    def task_table(self) -> list[dict[str, Any]]:
        return [self._row(row) for row in self.tasks]

    def total_row(self) -> dict[str, Any]:
        return self._row(self.total)

    def _row(self, row: TaskRow) -> dict[str, Any]:
        return {
            "task_name": row.task_name,
            "cells": row.cells(self.statuses),
            "enqueued": row.enqueued,
            "finished": row.finished,
            "failed": row.failed,
            "failure_rate": "-" if row.failure_rate is None else f"{row.failure_rate * 100:.1f}%",
            "p50": format_seconds(row.p50),
            "p95": format_seconds(row.p95),
        }


def dashboard_stats(
    window: timedelta, *, now: datetime | None = None, summary: DashboardCharts | None = None
) -> DashboardStats:
    """Per-task counts by status (runs enqueued in the window); failure rate, p50/p95 duration and
    throughput of runs that finished in the window; what is running and queued right now.

    With ``summary`` (the rollup's totals for the window) the per-task figures come from it instead:
    counts by status of runs that *ended* in the window, percentiles from its histograms.
    """
    now = now or timezone.now()
    since = now - window
    alias = db_alias()
    runs = JobRun.objects.using(alias)
    rows: dict[str, TaskRow] = {}
    seen_statuses: set[str] = set()
    total = TaskRow("All tasks")
    if summary is not None:
        source = "rollup histograms (within ~9%)"
        for task in summary.tasks:
            rows[task.task_name] = _rollup_row(task.task_name, task.cell)
            seen_statuses.update(task.cell.counts)
        summed = summary.total
        total.finished, total.failed = summed.executed, summed.failed
        total.p50, total.p95 = summed.duration.percentile(0.5), summed.duration.percentile(0.95)
    else:
        counts = (
            runs.filter(enqueued_at__gt=since, enqueued_at__lte=now)
            .values_list("task_name", "status")
            .annotate(n=Count("*"))
            .order_by()
        )
        for task_name, status, n in counts:
            rows.setdefault(task_name, TaskRow(task_name)).counts[status] = n
            seen_statuses.add(status)
        finished = runs.filter(finished_at__gt=since, finished_at__lte=now, status__in=EXECUTED).order_by()
        if connections[alias].vendor == "postgresql":
            source = "PostgreSQL percentile_cont"
            _postgresql_finished_stats(alias, since, now, rows, total)
        else:
            source = "computed in Python"
            _python_percentiles(finished, rows, total)
    for row in rows.values():
        for status, n in row.counts.items():
            total.counts[status] = total.counts.get(status, 0) + n
    active = dict(
        runs.filter(status__in=[RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.RETRYING])
        .values_list("status")
        .annotate(n=Count("*"))
        .order_by()
    )
    oldest = (
        runs.filter(status=RunStatus.QUEUED)
        .exclude(next_attempt_at__gt=now)  # waiting for its start time (enqueue_at), not stuck
        .only("id", "task_name", "enqueued_at", "status")
        .order_by("enqueued_at")
        .first()
    )
    return DashboardStats(
        window=window,
        since=since,
        now=now,
        tasks=sorted(rows.values(), key=lambda r: (-r.enqueued, -r.finished, r.task_name)),
        statuses=[s for s in RunStatus.values if s in seen_statuses],
        total=total,
        running=active.get(RunStatus.RUNNING, 0),
        queued=active.get(RunStatus.QUEUED, 0),
        retrying=active.get(RunStatus.RETRYING, 0),
        oldest_queued=oldest,
        percentiles_from=source,
    )


def _postgresql_finished_stats(
    alias: str, since: datetime, now: datetime, rows: dict[str, TaskRow], total: TaskRow
) -> None:
    """Per task and overall, in one scan: finished and failed counts, exact p50/p95 durations.

    Durations are sorted as float seconds (much cheaper than intervals), task names compared
    bytewise, and ``work_mem`` raised for this transaction so a day of runs sorts in memory.
    """
    connection = connections[alias]
    quote = connection.ops.quote_name
    sql = FINISHED_STATS_SQL.format(
        table=quote(JobRun._meta.db_table),
        task=quote("task_name"),
        status=quote("status"),
        started=quote("started_at"),
        finished=quote("finished_at"),
    )
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(sql, [*FAILED_STATUSES, since, now, *EXECUTED])
        results = cursor.fetchall()
    for task_name, n, failed, percentiles in results:
        row = total if task_name is None else rows.setdefault(task_name, TaskRow(task_name))
        row.finished, row.failed = n, failed
        row.p50, row.p95 = percentiles if percentiles else (None, None)


def _rollup_row(task_name: str, cell: Cell) -> TaskRow:
    return TaskRow(
        task_name,
        counts=dict(cell.counts),
        finished=cell.executed,
        failed=cell.failed,
        p50=cell.duration.percentile(0.5),
        p95=cell.duration.percentile(0.95),
    )


FINISHED_STATS_SQL = """
SELECT {task} COLLATE "C", COUNT(*), COUNT(*) FILTER (WHERE {status} IN (%s, %s)),
       PERCENTILE_CONT(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY date_part('epoch', {finished} - {started}))
FROM {table}
WHERE {finished} > %s AND {finished} <= %s AND {status} IN (%s, %s, %s)
GROUP BY GROUPING SETS ((1), ())
"""


def _python_percentiles(finished: QuerySet[JobRun], rows: dict[str, TaskRow], total: TaskRow) -> None:
    durations: dict[str, list[float]] = {}
    everything: list[float] = []
    query = finished.values_list("task_name", "status", "started_at", "finished_at")[:PYTHON_PERCENTILE_ROWS]
    for task_name, status, started_at, finished_at in query.iterator():
        row = rows.setdefault(task_name, TaskRow(task_name))
        row.finished += 1
        total.finished += 1
        if status in FAILED_STATUSES:
            row.failed += 1
            total.failed += 1
        if started_at and finished_at:
            seconds = (finished_at - started_at).total_seconds()
            durations.setdefault(task_name, []).append(seconds)
            everything.append(seconds)
    for task_name, values in durations.items():
        values.sort()
        rows[task_name].p50, rows[task_name].p95 = percentile(values, 0.5), percentile(values, 0.95)
    everything.sort()
    total.p50, total.p95 = percentile(everything, 0.5), percentile(everything, 0.95)


# --- An entry for the dashboard in the admin index ------------------------------------------------


@admin.register(JobsDashboard)
class JobsDashboardAdmin(ReadOnlyAdmin):
    """Lists "Jobs dashboard" in the admin index for whoever may view runs; its page is the dashboard."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("fusion_jobs.view_jobrun") or request.user.has_perm(
            "fusion_jobs.change_jobrun"
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "",
                self.admin_site.admin_view(self.redirect_to_dashboard),
                name="fusion_jobs_jobsdashboard_changelist",
            )
        ]

    def redirect_to_dashboard(self, request: HttpRequest) -> HttpResponseRedirect:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:fusion_jobs_jobrun_dashboard"))


admin.site.register(WorkerHeartbeat, WorkerHeartbeatAdmin)
