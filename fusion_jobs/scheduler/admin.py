"""Admin for cron schedules (registered from fusion_jobs.admin).

Schedules are declared in code, so nothing here edits one: the page shows what each will do
(task, expression, timezone, misfire policy, next fire, last run) and offers three actions, each
behind its own permission and a confirmation page:

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
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..exceptions import UnknownTaskError
from ..models import CronSchedule, JobRun
from ..recording import db_alias

RUN_NOW_LIMIT = 50
RECENT_RUNS = 15
STATE_COLOURS = {
    "active": "#198754",
    "paused": "#b35c00",
    "disabled": "#6c757d",
    "orphaned": "#c82333",
}

CONFIRM_TEMPLATE = """{% extends "admin/base_site.html" %}
{% load i18n admin_urls %}
{% block bodyclass %}{{ block.super }} app-{{ opts.app_label }} model-{{ opts.model_name }} fj-confirm{% endblock %}
{% block breadcrumbs %}
<div class="breadcrumbs">
<a href="{% url 'admin:index' %}">{% translate 'Home' %}</a>
&rsaquo; <a href="{% url 'admin:app_list' app_label=opts.app_label %}">{{ opts.app_config.verbose_name }}</a>
&rsaquo; <a href="{% url opts|admin_urlname:'changelist' %}">{{ opts.verbose_name_plural|capfirst }}</a>
&rsaquo; {{ verb|capfirst }}
</div>
{% endblock %}
{% block content %}
<div id="content-main">
  <p>{{ verb|capfirst }} {{ schedules|length }} schedule{{ schedules|pluralize }}?</p>
  <ul class="fj-notes">{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
  <table class="fj-sample">
    <thead><tr><th>schedule</th><th>task</th><th>expression</th><th>next fire</th></tr></thead>
    <tbody>
    {% for schedule in schedules %}
      <tr><td>{{ schedule.name }}</td><td>{{ schedule.task_name }}</td>
      <td><code>{{ schedule.expression }}</code> {{ schedule.timezone }}</td><td>{{ schedule.next_fire_at|default:"-" }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  <form method="post">{% csrf_token %}
    <div class="submit-row">
      {% for schedule in schedules %}<input type="hidden" name="{{ action_checkbox_name }}" value="{{ schedule.pk }}">{% endfor %}
      <input type="hidden" name="action" value="{{ action }}">
      <input type="hidden" name="post" value="yes">
      <input type="submit" class="default" value="Yes, {{ verb }}">
      <a href="{{ back_url }}" class="button cancel-link">No, take me back</a>
    </div>
  </form>
</div>
{% endblock %}
"""


def schedule_state(schedule: CronSchedule) -> str:
    if schedule.orphaned:
        return "orphaned"
    if not schedule.enabled:
        return "disabled"
    return "paused" if schedule.paused else "active"


def _run_badge(status: str) -> SafeString:
    from ..admin import badge  # the run admin's badge (imported late: it imports this module)

    return badge(status)


@admin.register(CronSchedule)
class CronScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "task_name",
        "expression_display",
        "policy_display",
        "next_fire_at",
        "last_run_display",
        "state_badge",
    )
    list_filter = ("paused", "orphaned", "enabled", "misfire")
    search_fields = ("name", "task_name")
    list_select_related = ("last_run",)
    actions = ("pause_schedules", "resume_schedules", "run_now")
    fields = (
        "name",
        "state_badge",
        "task_name",
        "expression_display",
        "input",
        "policy_display",
        "next_fire_at",
        "last_run_display",
        "recent_runs",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    # -- columns -------------------------------------------------------------------------------

    @admin.display(description="expression")
    def expression_display(self, obj: CronSchedule) -> SafeString:
        return format_html("<code>{}</code> {}", obj.expression, obj.timezone)

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
        when = timezone.localtime(run.scheduled_for or run.enqueued_at).strftime("%Y-%m-%d %H:%M")
        return format_html(
            '<a href="{}">{}</a> {}',
            reverse("admin:fusion_jobs_jobrun_change", args=[str(run.pk)]),
            when,
            _run_badge(run.status),
        )

    @admin.display(description="state")
    def state_badge(self, obj: CronSchedule) -> SafeString:
        state = schedule_state(obj)
        return format_html(
            '<span class="fj-badge fj-cron-{}" style="background-color:{}">{}</span>',
            state,
            STATE_COLOURS[state],
            state,
        )

    @admin.display(description=f"recent runs (last {RECENT_RUNS})")
    def recent_runs(self, obj: CronSchedule) -> SafeString | str:
        runs = list(
            JobRun.objects.filter(cron=obj)
            .order_by("-enqueued_at")
            .only("id", "status", "scheduled_for", "enqueued_at", "skip_reason")[:RECENT_RUNS]
        )
        if not runs:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a> {} {}</li>',
                (
                    (
                        reverse("admin:fusion_jobs_jobrun_change", args=[str(run.pk)]),
                        timezone.localtime(run.scheduled_for or run.enqueued_at).strftime("%Y-%m-%d %H:%M"),
                        _run_badge(run.status),
                        run.skip_reason,
                    )
                    for run in runs
                ),
            ),
        )

    # -- permissions: declared in code, so never added, edited or deleted here ----------------

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.pause_cronschedule")

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.run_cronschedule")

    # -- actions ---------------------------------------------------------------------------------

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[CronSchedule], action: str, verb: str, notes: list[str]
    ) -> TemplateResponse:
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
        template = engines["django"].from_string(CONFIRM_TEMPLATE)
        return TemplateResponse(request, template, context)

    @staticmethod
    def _confirmed(request: HttpRequest) -> bool:
        return request.method == "POST" and request.POST.get("post") == "yes"

    @admin.action(description="Pause selected schedules", permissions=["pause"])
    def pause_schedules(
        self, request: HttpRequest, queryset: QuerySet[CronSchedule]
    ) -> TemplateResponse | None:
        if not self._confirmed(request):
            return self._confirm(
                request,
                queryset,
                "pause_schedules",
                "pause",
                ["A paused schedule fires nothing until resumed; the pause survives restarts and deploys."],
            )
        count = queryset.filter(paused=False).update(paused=True, updated_at=timezone.now())
        self.message_user(request, f"Paused {count} schedule(s).", messages.SUCCESS)
        return None

    @admin.action(description="Resume selected schedules", permissions=["pause"])
    def resume_schedules(
        self, request: HttpRequest, queryset: QuerySet[CronSchedule]
    ) -> TemplateResponse | None:
        if not self._confirmed(request):
            return self._confirm(
                request,
                queryset,
                "resume_schedules",
                "resume",
                ["Each fires again from its next tick; ticks that passed while paused are not caught up."],
            )
        from .triggers import CrontabTrigger

        now = timezone.now()
        resumed = 0
        with transaction.atomic(using=db_alias()):
            selected = list(queryset.values_list("pk", flat=True))
            for schedule in CronSchedule.objects.select_for_update().filter(pk__in=selected, paused=True):
                schedule.paused = False
                schedule.next_fire_at = CrontabTrigger(
                    schedule.expression, schedule.timezone
                ).next_at_or_after(now)
                schedule.save(update_fields=["paused", "next_fire_at", "updated_at"])
                resumed += 1
        self.message_user(request, f"Resumed {resumed} schedule(s).", messages.SUCCESS)
        return None

    @admin.action(description="Run selected schedules now (queued for a worker)", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[CronSchedule]) -> TemplateResponse | None:
        from ..worker import disabled_reason

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
            return self._confirm(
                request,
                queryset,
                "run_now",
                "run now",
                [
                    "Each selected schedule's task is queued once with the schedule's input, for a worker.",
                    "This is not a tick: the schedule's next fire time does not change.",
                ],
            )
        from .firing import Publisher, run_now

        username = request.user.get_username() or f"user {request.user.pk}"
        publisher = Publisher()
        queued, unknown = [], []
        for schedule in queryset.order_by("name"):
            try:
                with transaction.atomic(using=db_alias()):
                    queued.append(run_now(schedule, requested_by=username, publisher=publisher))
            except UnknownTaskError:
                unknown.append(schedule.name)
        if queued:
            links = format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                ((reverse("admin:fusion_jobs_jobrun_change", args=[str(r.pk)]), r.task_name) for r in queued),
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
