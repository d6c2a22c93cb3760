"""Retry and cancel, as list actions and as buttons on a run's page, each behind its own permission.

Nothing changes on GET: each first shows a confirmation page, and only a POST with a CSRF token
from it acts. Retry always *queues* the new run. With jobs disabled (no broker, or
``FUSION_JOBS_EAGER``) the admin refuses with a message instead: running the task inline would
block the admin request (tasks may run for minutes) and a queued run would wait for a worker that
does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..api import RunHandle, get_jobs_status, is_jobs_enabled, retry_run
from ..exceptions import PayloadError, TaskArgumentsError, UnknownTaskError
from ..models import TERMINAL_STATUSES, WAITING_STATUSES, JobRun
from ..recording import cancel as cancel_runs_by_id
from ..recording import db_alias
from .counting import bounded_count, estimated_count
from .display import run_change_url

#: A bulk retry publishes one message per run inside the admin request: keep that bounded.
BULK_RETRY_LIMIT = 500
#: Retries committed (and so published) together after the first one has gone through.
RETRY_CHUNK = 50
CANCEL_BATCH = 1000
CONFIRM_SAMPLE = 20
DISABLED_RETRY_MESSAGE = (
    "Retry needs background jobs: {reason}. A retry is always queued for a worker, never run "
    "inside this admin request; configure FUSION_JOBS_BROKER_URL (and turn FUSION_JOBS_EAGER off)."
)


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


def requested_by(request: HttpRequest) -> str:
    """Who asks, as the new run records it (``enqueued_by``)."""
    return request.user.get_username() or f"user {request.user.pk}"


def _sample(queryset: QuerySet[JobRun]) -> list[JobRun]:
    return list(queryset.only("id", "task_name", "status", "enqueued_at")[:CONFIRM_SAMPLE])


def plan_retry(queryset: QuerySet[JobRun]) -> ActionPlan:
    selected = estimated_count(queryset)
    eligible = bounded_count(queryset.filter(status__in=TERMINAL_STATUSES), BULK_RETRY_LIMIT)
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


def plan_cancel(queryset: QuerySet[JobRun]) -> ActionPlan:
    selected = estimated_count(queryset)
    eligible = queryset.filter(status__in=WAITING_STATUSES).order_by().count()
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


def do_retry(runs: QuerySet[JobRun], username: str) -> RetryOutcome:
    """Queue the retries in small committed chunks, the first of one run.

    Each retry is published when its chunk commits. If the broker does not take them (down,
    or hanging until the publish timeout), the request stops there instead of paying that
    timeout once per selected run: what was created stays queued for the outbox relay, and
    the rest is not retried. Inside a request-wide transaction (ATOMIC_REQUESTS) publishing
    waits for the end of the request, so everything is created at once.
    """
    alias = db_alias()
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


def do_cancel(queryset: QuerySet[JobRun]) -> int:
    cancellable = queryset.filter(status__in=WAITING_STATUSES).order_by()
    total = 0
    while True:
        batch = [str(pk) for pk in cancellable.values_list("pk", flat=True)[:CANCEL_BATCH]]
        if not batch:
            return total
        done = cancel_runs_by_id(batch)
        total += done
        if done == 0:
            return total


def retry_messages(outcome: RetryOutcome, ineligible: int) -> list[tuple[str, int]]:
    """What a retry did, as (message, level) lines for the user."""
    queued = len(outcome.handles)
    lines = []
    if queued:
        lines.append(
            (
                f"Queued {queued} retr{'y' if queued == 1 else 'ies'}, linked to the original run(s).",
                messages.SUCCESS,
            )
        )
    if outcome.unpublished:
        lines.append(
            (
                f"The broker did not accept {outcome.unpublished} of them; they stay queued and the outbox "
                f"relay publishes them when it can. {outcome.not_tried} other run(s) were not retried: "
                "try again once the broker is back.",
                messages.WARNING,
            )
        )
    if outcome.unknown:
        lines.append(
            (f"{outcome.unknown} run(s) not retried: their task is no longer registered.", messages.WARNING)
        )
    if outcome.refused:
        lines.append(
            (
                f"{outcome.refused} run(s) not retried: their arguments no longer fit the task, or the run "
                "was left by a rejected broker message.",
                messages.WARNING,
            )
        )
    if ineligible:
        lines.append(
            (f"{ineligible} run(s) not retried: still queued, running or retrying.", messages.WARNING)
        )
    return lines


def cancel_messages(cancelled: int, plan: ActionPlan) -> list[tuple[str, int]]:
    """What a cancel did, as (message, level) lines for the user."""
    if cancelled:
        lines = [(f"Cancelled {cancelled} run(s).", messages.SUCCESS)]
    else:
        lines = [("No run was cancelled (none was queued or retrying).", messages.WARNING)]
    if plan.ineligible:
        lines.append((f"{plan.ineligible} run(s) left alone: already running or finished.", messages.WARNING))
    return lines


class RunActions(admin.ModelAdmin):
    """The run admin's retry and cancel: permissions, list actions, single-run views, confirmation."""

    def has_retry_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_jobrun")

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_jobrun")

    def check_action_permissions(self, request: HttpRequest) -> None:
        """A POSTed action the user may not take is refused before Django looks at it."""
        if request.method == "POST":
            requested = set(request.POST.getlist("action"))
            if ("retry_runs" in requested and not self.has_retry_permission(request)) or (
                "cancel_runs" in requested and not self.has_cancel_permission(request)
            ):
                raise PermissionDenied

    def tell(self, request: HttpRequest, lines: list[tuple[str, int]]) -> None:
        for text, level in lines:
            self.message_user(request, text, level)

    @admin.action(description="Retry selected runs (new runs, same arguments)", permissions=["retry"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[JobRun]) -> HttpResponse | None:
        plan = plan_retry(queryset)
        if plan.problem:
            self.message_user(request, plan.problem, messages.ERROR)
            return None
        if request.POST.get("post") != "yes":
            return self.confirmation(request, plan)
        outcome = do_retry(queryset.filter(status__in=TERMINAL_STATUSES), requested_by(request))
        self.tell(request, retry_messages(outcome, plan.ineligible))
        return None

    @admin.action(description="Cancel selected runs (queued or retrying)", permissions=["cancel"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[JobRun]) -> HttpResponse | None:
        plan = plan_cancel(queryset)
        if request.POST.get("post") != "yes":
            return self.confirmation(request, plan)
        self.tell(request, cancel_messages(do_cancel(queryset), plan))
        return None

    def confirmation(
        self, request: HttpRequest, plan: ActionPlan, *, run: JobRun | None = None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Confirm: {plan.verb} {'this run' if run else 'the selected runs'}",
            "opts": self.opts,
            "plan": plan,
            "verb": plan.verb,
            "run": run,
            "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": run_change_url(run.pk) if run else request.get_full_path(),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/fusion_jobs/jobrun/confirm_action.html", context)

    def get_run(self, request: HttpRequest, object_id: str) -> JobRun | None:
        try:
            return self.get_object(request, unquote(object_id))
        except ValueError:
            return None

    def missing(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        self.message_user(
            request, f"No job run with id {object_id!r}; perhaps it was pruned.", messages.WARNING
        )
        return HttpResponseRedirect(reverse("admin:fusion_jobs_jobrun_changelist"))

    def _one_run(
        self,
        request: HttpRequest,
        object_id: str,
        permitted: bool,
        planner: Callable[[QuerySet[JobRun]], ActionPlan],
    ) -> tuple[JobRun, QuerySet[JobRun], ActionPlan] | HttpResponseBase:
        """The run a single-run view acts on and its plan; or the response that ends the view first."""
        if not (self.has_view_permission(request) and permitted):
            raise PermissionDenied
        run = self.get_run(request, object_id)
        if run is None:
            return self.missing(request, object_id)
        this_run = self.get_queryset(request).filter(pk=run.pk)
        plan = planner(this_run)
        if request.method != "POST":
            return self.confirmation(request, plan, run=run)
        if plan.problem:
            self.message_user(request, plan.problem, messages.ERROR)
            return HttpResponseRedirect(run_change_url(run.pk))
        return run, this_run, plan

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        found = self._one_run(request, object_id, self.has_retry_permission(request), plan_retry)
        if isinstance(found, HttpResponseBase):
            return found
        run, this_run, _plan = found
        outcome = do_retry(this_run, requested_by(request))
        if not outcome.handles or outcome.unpublished:
            self.tell(request, retry_messages(outcome, 0))
        else:
            self.message_user(request, "Queued a retry of this run (a new run, linked to the original).")
        if not outcome.handles:
            return HttpResponseRedirect(run_change_url(run.pk))
        return HttpResponseRedirect(run_change_url(outcome.handles[0].run_id))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        found = self._one_run(request, object_id, self.has_cancel_permission(request), plan_cancel)
        if isinstance(found, HttpResponseBase):
            return found
        run, this_run, plan = found
        self.tell(request, cancel_messages(do_cancel(this_run), plan))
        return HttpResponseRedirect(run_change_url(run.pk))
