"""The digest settings form: a time of day and an IANA zone."""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from django import forms

from fusion_jobs.scheduler.crontab import HOST_ZONES


def _zones() -> list[tuple[str, str]]:
    return [(zone, zone) for zone in sorted(available_timezones() - HOST_ZONES)]


class DigestTimeForm(forms.Form):
    at = forms.TimeField(label="Send my briefing at", widget=forms.TimeInput(attrs={"type": "time"}))
    timezone = forms.ChoiceField(label="in the time zone", choices=_zones, initial="UTC")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[
            "at"
        ].help_text = "Daily; a time skipped by a DST change is sent when the clock jumps over it."
