"""The jobs sandbox (``/sandbox/jobs/``): a live status badge, the enqueue seam, a demo job to run and
watch, your recent runs, the agent's schedules and the mailer's mode.

Anyone may look; starting a demo job needs a login and is rate-limited per user
(``SANDBOX_ENQUEUE_RATE_LIMIT``). A user sees only their own runs: the ones they started here and their
documents' runs, in the list, the watched run and ``runs/<id>.json`` (another user's id is a 404).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

import fusion_jobs
from example.agent import conf as agent_conf
from example.agent.crons import AGENT_CRONS
from example.agent.models import MessageStatus, OutboundMessage
from example.core.conf import get as get_setting
from example.core.ratelimit import Rate, hit
from example.core.runs import mode_word, no_worker_notice, run_state
from example.core.tasks import django_hello
from example.documents import conf as documents_conf
from example.documents.models import Document
from fusion_jobs.models import HANDLE_INLINE, HANDLE_QUEUED, CronSchedule, JobRun
from fusion_jobs.registry import get_task

from .models import SandboxRun

#: The demo jobs the button may start, with the arguments it passes (example/core/tasks.py).
DEMO_JOBS: dict[str, dict[str, Any]] = {
    "demo-count": {"to": 10, "delay": 0.1},
    "demo-hello": {"name": "sandbox"},
    # Declared with Django's @task: named by its module path, enqueued with Task.enqueue().
    django_hello.module_path: {"name": "sandbox"},
}

# The documents demo's kick_processing. Shown as text: the template escapes it like any other data.
SEAM_SNIPPET = '''import fusion_jobs


def kick_processing(document_id: int) -> fusion_jobs.RunHandle:
    """Kick off processing: a worker job when a broker is configured, else inline right here."""
    # enqueue() is the seam, so callers need no branch of their own. With FUSION_JOBS_BROKER_URL
    # set it publishes once the transaction commits, and runs the task inline if the broker
    # hiccups; without it, it runs the task in this process. A JobRun row records it either way.
    handle = fusion_jobs.enqueue("process-chat-document", document_id=document_id)
    # handle.mode is "queued" (a worker will run it) or "inline" (it already ran, here)
    return handle'''


def _status() -> dict[str, Any]:
    """The badge's data: jobs mode with the broker password masked, and the mailer mode."""
    status = fusion_jobs.get_jobs_status()
    mailer = agent_conf.mailer_status()
    return {
        "enabled": bool(status["enabled"]),
        "mode": status["mode"],
        "label": mode_word(status),
        "broker": status["broker"],
        "reason": status["reason"],
        "mailer": mailer["mode"],
        "no_worker": no_worker_notice(
            documents_conf.no_worker_after_seconds(), enabled=bool(status["enabled"])
        ),
        "checked_at": timezone.now().isoformat(),
    }


def _enqueue_rate() -> Rate:
    return Rate.parse(str(get_setting("SANDBOX_ENQUEUE_RATE_LIMIT")))


def visible_runs(request: HttpRequest) -> QuerySet[JobRun]:
    """The runs this user may see here: the demo runs they started and their documents' runs."""
    user = request.user
    if not user.is_authenticated:
        return JobRun.objects.none()
    started = SandboxRun.objects.filter(user=user).values("run_id")
    documents = Document.objects.filter(owner=user, last_run_id__isnull=False).values("last_run_id")
    return JobRun.objects.filter(Q(pk__in=started) | Q(pk__in=documents))


@dataclass
class ScheduleRow:
    name: str
    expression: str
    task: str
    description: str
    schedule: CronSchedule | None
    would_fire_at: datetime | None
    overdue: bool = False


def _overdue(schedule: CronSchedule | None, now: datetime) -> bool:
    """Registered but not fired on time: ``runcrons`` is not running, or is behind."""
    if schedule is None or schedule.next_fire_at is None:
        return False
    return schedule.next_fire_at < now - timedelta(seconds=30)


def _first_tick(expression: str, now: datetime) -> datetime | None:
    """When a cron not registered yet would first fire (UTC)."""
    ticks = fusion_jobs.next_fire_times(expression, after=now - timedelta(microseconds=1), count=1)
    return ticks[0] if ticks else None


def _schedules() -> tuple[list[ScheduleRow], bool]:
    """The six declared crons, each with its CronSchedule row once ``runcrons`` has registered it."""
    rows = {s.name: s for s in CronSchedule.objects.filter(name__in=[c.name for c in AGENT_CRONS])}
    now = timezone.now()
    out = [
        ScheduleRow(
            name=cron.name,
            expression=cron.expression,
            task=cron.task,
            description=get_task(cron.task).description,
            schedule=rows.get(cron.name),
            would_fire_at=None if cron.name in rows else _first_tick(cron.expression, now),
            overdue=_overdue(rows.get(cron.name), now),
        )
        for cron in AGENT_CRONS
    ]
    return out, bool(rows)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _run_status(run: JobRun) -> dict[str, Any]:
    data = run.as_status()
    data["terminal"] = run.is_terminal
    data["started_at"] = run.started_at.isoformat() if run.started_at else None
    # Demo results are harmless to show; other tasks' results stay in the admin.
    data["result"] = run.result if run.task_name in DEMO_JOBS and run.is_terminal else None
    data["state"], data["status_display"] = run_state(run)
    return data


@require_GET
def jobs_page(request: HttpRequest) -> HttpResponse:
    schedules, registered = _schedules()
    message_counts = dict(
        OutboundMessage.objects.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    watched: JobRun | None = None
    run_param = request.GET.get("run", "")
    if run_param:
        try:
            watched = visible_runs(request).filter(pk=uuid.UUID(run_param)).first()
        except ValueError:
            watched = None
    context = {
        "status": _status(),
        "seam_snippet": SEAM_SNIPPET,
        "demo_jobs": list(DEMO_JOBS),
        "django_task_name": django_hello.module_path,
        "watched": watched,
        "recent_runs": visible_runs(request).only(
            "id", "task_name", "status", "mode", "result", "enqueued_at", "started_at", "finished_at"
        )[:10],
        "enqueue_rate": _enqueue_rate(),
        "schedules": schedules,
        "schedules_registered": registered,
        "mailer": agent_conf.mailer_status(),
        "message_counts": [(label, message_counts.get(value, 0)) for value, label in MessageStatus.choices],
    }
    return render(request, "sandbox/jobs.html", context)


@never_cache
@require_GET
def status_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_status())


@require_POST
def enqueue_demo(request: HttpRequest) -> HttpResponse:
    """Start a demo job; JSON for the page's script, a redirect back to the page without JavaScript."""
    if not request.user.is_authenticated:
        if _wants_json(request):
            return JsonResponse({"error": "log in to start a demo job"}, status=403)
        return redirect_to_login(reverse("sandbox:jobs"))
    task_name = request.POST.get("task", "demo-count")
    if task_name not in DEMO_JOBS:
        return HttpResponseBadRequest("unknown demo job")
    wait = hit("enqueue", str(request.user.pk), _enqueue_rate())
    if wait:
        message = f"too many demo jobs: try again in {wait} s"
        if _wants_json(request):
            return JsonResponse({"error": message}, status=429)
        return HttpResponse(message, status=429, content_type="text/plain")
    with transaction.atomic():
        if task_name == django_hello.module_path:
            # Django's Tasks framework: .enqueue() goes through fusion-jobs' backend, same JobRun.
            result = django_hello.enqueue(**DEMO_JOBS[task_name])
            mode = HANDLE_QUEUED if fusion_jobs.is_jobs_enabled() else HANDLE_INLINE
            handle = fusion_jobs.RunHandle(run_id=result.id, mode=mode, task_name=task_name)
        else:
            handle = fusion_jobs.enqueue(task_name, **DEMO_JOBS[task_name])
        SandboxRun.objects.create(run_id=handle.run_id, user=request.user)
    if _wants_json(request):
        run = JobRun.objects.get(pk=handle.run_id)
        return JsonResponse(
            {
                "mode": handle.mode,
                "run": _run_status(run),
                "status_url": reverse("sandbox:run", args=[handle.run_id]),
            },
            status=201,
        )
    return redirect(f"{reverse('sandbox:jobs')}?run={handle.run_id}#demo")


@never_cache
@require_GET
def run_json(request: HttpRequest, run_id: uuid.UUID) -> JsonResponse:
    run = visible_runs(request).filter(pk=run_id).first()
    if run is None:
        raise Http404("no such run of yours")
    return JsonResponse(_run_status(run))
