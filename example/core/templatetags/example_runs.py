"""``{% run_badge run %}``: a run's status badge, with the document's outcome (see example/core/runs.py)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from example.core.runs import run_state
from fusion_jobs.models import JobRun

register = template.Library()


@register.simple_tag
def run_badge(run: JobRun) -> SafeString:
    key, label = run_state(run)
    return format_html('<span class="status status-{}" data-status="{}">{}</span>', key, run.status, label)
