"""``/agent/digest/``: each user picks the time and zone of their daily briefing (a runtime schedule)."""

from __future__ import annotations

from datetime import datetime, time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from fusion_jobs.scheduler.declare import cron_trigger

from .forms import DigestTimeForm
from .schedules import clear_user_digest, set_user_digest, user_digest

PREVIEW = 3


@login_required
@require_http_methods(["GET", "POST"])
def digest_settings(request: HttpRequest) -> HttpResponse:
    schedule = user_digest(request.user)
    if request.method == "POST" and "clear" in request.POST:
        clear_user_digest(request.user)
        messages.success(request, "Your briefing is back to the shared 07:30 one.")
        return redirect("agent:digest")
    initial: dict[str, object] = {}
    if schedule is not None:
        initial = {"timezone": schedule.timezone}
        minute, hour = schedule.expression.split()[:2]
        if minute.isdigit() and hour.isdigit():  # else edited in the admin: the page shows the expression
            initial["at"] = time(int(hour), int(minute))
    form = DigestTimeForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        at, zone = form.cleaned_data["at"], form.cleaned_data["timezone"]
        set_user_digest(request.user, at, zone)
        messages.success(request, f"Your briefing now comes daily at {at:%H:%M} ({zone}).")
        return redirect("agent:digest")
    upcoming: list[datetime] = []
    if schedule is not None and schedule.active:
        trigger, moment = cron_trigger(schedule.expression, schedule.timezone), schedule.next_fire_at
        while moment is not None and len(upcoming) < PREVIEW:
            upcoming.append(moment.astimezone(trigger.zone))
            moment = trigger.next_after(moment)
    return render(request, "agent/digest.html", {"form": form, "schedule": schedule, "upcoming": upcoming})
