"""How the admin shows runs and schedules: badges, durations, JSON, links, next fires.

Arguments, results, tracebacks and task names can hold user input (django_dramatiq's
``mark_safe`` is a stored XSS), so every fragment here goes through ``format_html`` or
``format_html_join``; anything larger is a template, auto-escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import CronSchedule, RunStatus

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
#: A schedule's state (:func:`schedule_state`) and its badge colour.
STATE_COLOURS = {
    "active": "#198754",
    "paused": "#b35c00",
    "disabled": "#6c757d",
    "orphaned": "#c82333",
}
#: Above this many characters the run page shows the start of a JSON value and links to all of it:
#: a run with 20 MB of arguments must not render a 20 MB page.
JSON_DISPLAY_LIMIT = 64 * 1024


def local_minute(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def _badge(kind: str, key: str, colour: str, label: str) -> SafeString:
    return format_html(
        '<span class="fj-badge fj-{}-{}" style="background-color:{}">{}</span>', kind, key, colour, label
    )


def badge(status: str) -> SafeString:
    """A run status as a coloured label."""
    label = RunStatus(status).label if status in RunStatus.values else status
    return _badge("status", status, STATUS_COLOURS.get(status, "#6c757d"), label)


def schedule_state(schedule: CronSchedule) -> str:
    if schedule.orphaned:
        return "orphaned"
    if not schedule.enabled:
        return "disabled"
    return "paused" if schedule.paused else "active"


def state_badge(schedule: CronSchedule) -> SafeString:
    """A schedule's state (active, paused, disabled, orphaned) as a coloured label."""
    state = schedule_state(schedule)
    return _badge("cron", state, STATE_COLOURS[state], state)


def run_change_url(run_id: Any) -> str:
    return reverse("admin:fusion_jobs_jobrun_change", args=[str(run_id)])


def run_json_url(run_id: Any, field_name: str) -> str:
    return reverse("admin:fusion_jobs_jobrun_json", args=[str(run_id), field_name])


def run_items(items: Iterable[tuple[Any, str, str, str]]) -> SafeString:
    """One ``<li>`` per ``(run id, label, status, note)``: a link to the run, its badge, the note."""
    return format_html_join(
        "",
        '<li><a href="{}">{}</a> {} {}</li>',
        ((run_change_url(run_id), label, badge(status), note) for run_id, label, status, note in items),
    )


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def pretty_json(value: Any, download_url: str = "") -> SafeString:
    text = dump_json(value)
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


def attempt_log_table(attempt_log: Any) -> SafeString | str:
    entries = [entry for entry in attempt_log or [] if isinstance(entry, dict)]
    if not entries:
        return "-"
    return render_to_string("admin/fusion_jobs/jobrun/attempt_log.html", {"entries": entries})


def fires_html(ticks: list[datetime], zone: str) -> SafeString:
    """Next fire times in the schedule's zone, each with its UTC time (and date, when another)."""
    local = ZoneInfo(zone)
    rows = []
    for tick in ticks:
        here, utc = tick.astimezone(local), tick.astimezone(UTC)
        # The UTC date too when it is not the local one (Sydney's midnight is 13:00 UTC).
        rows.append(
            (
                here.strftime("%a %Y-%m-%d %H:%M"),
                zone,
                utc.strftime("%H:%M" if utc.date() == here.date() else "%a %Y-%m-%d %H:%M"),
            )
        )
    return format_html(
        '<ol class="fj-next-fires">{}</ol>',
        format_html_join("", '<li>{} {} <span class="fj-stage">({} UTC)</span></li>', rows),
    )
