"""Admin for cron schedules.

A schedule's origin decides what can be done to it here. A *declared* one (a registrar's) is read
only: the code owns it. A *runtime* one can be added (``add_cronschedule``), edited
(``change_cronschedule``) and deleted (``delete_cronschedule``, also for an orphaned declared one),
through the same checks as ``ensure_cron`` (:mod:`.forms`). Every page shows what each will do
(task, expression, timezone, misfire policy, next fire, last run), and three actions, each behind
its own permission and a confirmation page:

* **pause** / **resume** (``pause_cronschedule``): a pause is kept across restarts and deploys
  (``ensure_cron`` never touches it). Resuming starts from the next tick: the ticks that passed
  while paused are not treated as missed.
* **run now** (``run_cronschedule``): queues one run of the schedule's task with its input for a
  worker. Never inline inside the admin request; with jobs disabled the admin refuses.

Everything rendered from a schedule goes through ``format_html`` or template auto-escaping.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..exceptions import CronError, UnknownTaskError
from ..models import CronOrigin, CronSchedule, JobRun
from ..recording import db_alias
from ..scheduler import firing
from ..scheduler.declare import delete_cron, ensure_cron
from ..scheduler.triggers import CrontabTrigger
from ..worker import disabled_reason
from .actions import requested_by
from .changelist import StorableFiltersChangeList
from .display import badge, fires_html, local_minute, run_change_url, run_items, state_badge
from .forms import PREVIEW_FIRES, RuntimeScheduleForm, next_fires

RUN_NOW_LIMIT = 50
RECENT_RUNS = 15
#: Each action's confirmation page: its verb and what the user should know before saying yes.
CONFIRMATIONS: dict[str, tuple[str, list[str]]] = {
    "pause_schedules": (
        "pause",
        ["A paused schedule fires nothing until resumed; the pause survives restarts and deploys."],
    ),
    "resume_schedules": (
        "resume",
        ["Each fires again from its next tick; ticks that passed while paused are not caught up."],
    ),
    "run_now": (
        "run now",
        [
            "Each selected schedule's task is queued once with the schedule's input, for a worker.",
            "This is not a tick: the schedule's next fire time does not change.",
        ],
    ),
}


@admin.register(CronSchedule)
class CronScheduleAdmin(admin.ModelAdmin):
    # Five columns, two lines each where it helps: at 1280 px the admin's sidebar and the filters
    # leave the list about 630 px, and every column (state and last run included) must fit in it.
    list_display = (
        "name_display",
        "state_display",
        "schedule_display",
        "next_fire_display",
        "last_run_display",
    )
    list_filter = ("origin", "paused", "orphaned", "enabled", "misfire")
    search_fields = ("name", "task_name")
    list_select_related = ("last_run",)
    actions = ("pause_schedules", "resume_schedules", "run_now")
    fields = (
        "name",
        "state_badge",
        "origin",
        "task_name",
        "expression_display",
        "input",
        "policy_display",
        "next_fire_display",  # none when paused, disabled or orphaned
        "next_fires_preview",
        "last_run_display",
        "recent_runs",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    #: A runtime schedule's form: what ``ensure_cron`` takes, then what the schedule did.
    editable_fields = ("task_name", "expression", "timezone", "misfire", "max_lateness", "input")
    shown_with_form = (
        "state_badge",
        "origin",
        "next_fire_display",
        "next_fires_preview",
        "last_run_display",
        "recent_runs",
        "created_at",
        "updated_at",
    )

    class Media:
        css = {"all": ("fusion_jobs/admin.css",)}
        js = ("fusion_jobs/cron_preview.js",)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type:
        return StorableFiltersChangeList  # a NUL in a filter or search is refused, not a 500

    # -- the add/edit form's live preview ---------------------------------------------------------

    def get_urls(self) -> list[Any]:
        preview = path(
            "preview/",
            self.admin_site.admin_view(self.preview_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The next fires of ``?expression=&timezone=``, as the form's script shows them while typing."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        expression = request.GET.get("expression", "")[:120]
        zone = request.GET.get("timezone", "UTC")[:64] or "UTC"
        try:
            ticks = next_fires(expression, zone)
        except CronError as exc:
            return JsonResponse({"error": str(exc)})
        if not ticks:
            return JsonResponse({"error": f"{expression!r} never fires"})
        return JsonResponse({"html": str(fires_html(ticks, zone))})

    # -- forms: runtime schedules only ------------------------------------------------------------

    @staticmethod
    def _editable(obj: CronSchedule | None) -> bool:
        return obj is not None and obj.origin == CronOrigin.RUNTIME

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("name", *self.editable_fields)
        if self._editable(obj) and self.has_change_permission(request, obj):
            return ("name", *self.editable_fields, *self.shown_with_form)
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        if self._editable(obj) and self.has_change_permission(request, obj):
            return ("name", *self.shown_with_form)  # renaming is delete + add
        return self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None or self._editable(obj):
            kwargs["form"] = RuntimeScheduleForm
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: CronSchedule, form: Any, change: bool) -> None:
        """Through ``ensure_cron`` (outside a registrar, so runtime): one path, one set of rules."""
        data = form.cleaned_data
        row = ensure_cron(
            data["task_name"],
            obj.name,
            data["expression"],
            data.get("input") or {},
            timezone=data["timezone"],
            misfire=data["misfire"],
            max_lateness=data.get("max_lateness"),
        )
        obj.pk = row.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: CronSchedule) -> None:
        delete_cron(obj.name)

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would delete declared schedules too
        return actions

    # -- columns -------------------------------------------------------------------------------

    @admin.display(description="name and task", ordering="name")
    def name_display(self, obj: CronSchedule) -> SafeString:
        return format_html('{}<br><span class="fj-stage">{}</span>', obj.name, obj.task_name)

    @admin.display(description="state", ordering="origin")
    def state_display(self, obj: CronSchedule) -> SafeString:
        return format_html('{}<br><span class="fj-stage">{}</span>', state_badge(obj), obj.origin)

    @admin.display(description="schedule and misfire policy", ordering="expression")
    def schedule_display(self, obj: CronSchedule) -> SafeString:
        return format_html(
            '<code>{}</code> <span style="overflow-wrap:anywhere">{}</span><br><span class="fj-stage">{}</span>',
            obj.expression,
            obj.timezone,
            self.policy_display(obj),
        )

    @admin.display(description="expression")
    def expression_display(self, obj: CronSchedule) -> SafeString:
        return format_html("<code>{}</code> {}", obj.expression, obj.timezone)

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire_display(self, obj: CronSchedule) -> str:
        if obj.next_fire_at is None or not obj.active:
            return "-"
        return local_minute(obj.next_fire_at)

    @admin.display(description=f"next {PREVIEW_FIRES} fires")
    def next_fires_preview(self, obj: CronSchedule) -> SafeString | str:
        if not obj.active:
            return "- (not firing: paused, disabled or orphaned)"
        try:
            return fires_html(next_fires(obj.expression, obj.timezone), obj.timezone)
        except CronError as exc:
            return str(exc)

    @admin.display(description="misfire policy", ordering="misfire")
    def policy_display(self, obj: CronSchedule) -> str:
        if obj.max_lateness:
            return f"{obj.misfire} (max lateness {obj.max_lateness:g} s)"
        return obj.misfire

    @admin.display(description="last run")
    def last_run_display(self, obj: CronSchedule) -> SafeString | str:
        run = obj.last_run
        if run is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a><br>{}',
            run_change_url(run.pk),
            local_minute(run.scheduled_for or run.enqueued_at),
            badge(run.status),
        )

    @admin.display(description="state")
    def state_badge(self, obj: CronSchedule) -> SafeString:
        return state_badge(obj)

    @admin.display(description=f"recent runs (last {RECENT_RUNS})")
    def recent_runs(self, obj: CronSchedule) -> SafeString | str:
        runs = list(
            JobRun.objects.filter(cron=obj)
            .order_by("-enqueued_at")
            .only("id", "status", "scheduled_for", "enqueued_at", "skip_reason")[:RECENT_RUNS]
        )
        if not runs:
            return "-"
        items = run_items(
            (run.pk, local_minute(run.scheduled_for or run.enqueued_at), run.status, run.skip_reason)
            for run in runs
        )
        return format_html("<ul>{}</ul>", items)

    # -- permissions: declared schedules belong to the code; runtime ones to their permissions ---

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not self._editable(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.origin == CronOrigin.DECLARED and not obj.orphaned:
            return False
        return super().has_delete_permission(request, obj)

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.pause_cronschedule")

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.run_cronschedule")

    # -- actions ---------------------------------------------------------------------------------

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[CronSchedule], action: str
    ) -> TemplateResponse:
        verb, notes = CONFIRMATIONS[action]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Confirm: {verb}",
            "opts": self.opts,
            "schedules": list(queryset.order_by("name")),
            "action": action,
            "verb": verb,
            "notes": notes,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": request.get_full_path(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/fusion_jobs/cronschedule/confirm_action.html", context)

    @staticmethod
    def _confirmed(request: HttpRequest) -> bool:
        return request.method == "POST" and request.POST.get("post") == "yes"

    @admin.action(description="Pause selected schedules", permissions=["pause"])
    def pause_schedules(
        self, request: HttpRequest, queryset: QuerySet[CronSchedule]
    ) -> TemplateResponse | None:
        if not self._confirmed(request):
            return self._confirm(request, queryset, "pause_schedules")
        count = queryset.filter(paused=False).update(paused=True, updated_at=timezone.now())
        self.message_user(request, f"Paused {count} schedule(s).", messages.SUCCESS)
        return None

    @admin.action(description="Resume selected schedules", permissions=["pause"])
    def resume_schedules(
        self, request: HttpRequest, queryset: QuerySet[CronSchedule]
    ) -> TemplateResponse | None:
        if not self._confirmed(request):
            return self._confirm(request, queryset, "resume_schedules")
        now = timezone.now()
        resumed, refused = 0, []
        with transaction.atomic(using=db_alias()):
            selected = list(queryset.values_list("pk", flat=True))
            for schedule in CronSchedule.objects.select_for_update().filter(pk__in=selected, paused=True):
                try:  # a row stored before a stricter parser, or edited by hand
                    trigger = CrontabTrigger(schedule.expression, schedule.timezone)
                except CronError as exc:
                    refused.append(f"{schedule.name}: {exc}")
                    continue
                schedule.paused = False
                schedule.next_fire_at = trigger.next_at_or_after(now)
                schedule.save(update_fields=["paused", "next_fire_at", "updated_at"])
                resumed += 1
        self.message_user(request, f"Resumed {resumed} schedule(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not resumed (fix its expression first): {reason}", messages.ERROR)
        return None

    @admin.action(description="Run selected schedules now (queued for a worker)", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[CronSchedule]) -> TemplateResponse | None:
        reason = disabled_reason()
        if reason:
            self.message_user(
                request,
                f"Run now needs background jobs ({reason.rstrip('.')}). A run started here is always queued for a "
                "worker, never run inside this admin request.",
                messages.ERROR,
            )
            return None
        if queryset.count() > RUN_NOW_LIMIT:
            self.message_user(
                request, f"Select at most {RUN_NOW_LIMIT} schedules to run at once.", messages.ERROR
            )
            return None
        if not self._confirmed(request):
            return self._confirm(request, queryset, "run_now")
        username = requested_by(request)
        publisher = firing.Publisher()
        queued, unknown = [], []
        for schedule in queryset.order_by("name"):
            try:
                with transaction.atomic(using=db_alias()):
                    queued.append(firing.run_now(schedule, requested_by=username, publisher=publisher))
            except UnknownTaskError:
                unknown.append(schedule.name)
        if queued:
            links = format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                ((run_change_url(r.pk), r.task_name) for r in queued),
            )
            self.message_user(
                request, format_html("Queued {} run(s): {}", len(queued), links), messages.SUCCESS
            )
        if publisher.deferred:
            self.message_user(
                request,
                f"The broker did not take {publisher.deferred} of them; they stay queued and are published "
                "when it is back (runcrons and the outbox relay retry them).",
                messages.WARNING,
            )
        if unknown:
            self.message_user(
                request,
                f"Not run: the task of {', '.join(unknown)} is not registered (renamed or removed?).",
                messages.WARNING,
            )
        return None
