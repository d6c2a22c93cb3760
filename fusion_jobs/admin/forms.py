"""The runtime schedule form: what ``ensure_cron`` takes, with its checks, each error on its field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms

from ..exceptions import CronError, FusionJobsError
from ..models import CronSchedule, MisfirePolicy
from ..registry import all_tasks, get_task
from ..scheduler.crontab import next_fire_times
from ..scheduler.declare import check_input, cron_trigger

#: How many next fires a schedule's page and the form's live preview show.
PREVIEW_FIRES = 5


def next_fires(expression: str, zone: str, count: int = PREVIEW_FIRES) -> list[datetime]:
    """The next ``count`` ticks (aware) of ``expression`` in ``zone``; CronError when invalid."""
    return next_fire_times(expression, timezone=zone, count=count)


class InputField(forms.JSONField):
    """Django's JSONField lets a deeply nested document's RecursionError out as a server error."""

    too_deep = "The JSON is nested too deeply."

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(self.too_deep, code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # the invalid form shows the text as typed
            return forms.fields.InvalidJSONInput(data)


def _task_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(all_tasks())]


class RuntimeScheduleForm(forms.ModelForm):
    """Adds or edits a runtime schedule with ``ensure_cron``'s checks, each error on its field."""

    task_name = forms.ChoiceField(label="task", choices=_task_choices)
    expression = forms.CharField(
        max_length=120,
        help_text="Five crontab fields (minute hour day-of-month month day-of-week) or @daily, @hourly... "
        '<span class="fj-cron-preview" aria-live="polite"></span>',
    )
    timezone = forms.CharField(max_length=64, initial="UTC", help_text="An IANA zone, e.g. Europe/Berlin.")
    misfire = forms.ChoiceField(choices=MisfirePolicy.choices, initial=MisfirePolicy.LATEST)
    input = InputField(
        required=False,
        initial=dict,
        help_text="The task's keyword arguments, a JSON object, checked against its signature.",
    )

    class Meta:
        model = CronSchedule
        fields = ("name", "task_name", "expression", "timezone", "misfire", "max_lateness", "input")

    def clean_timezone(self) -> str:
        zone = str(self.cleaned_data["timezone"]).strip()
        try:
            cron_trigger("0 0 * * *", zone)
        except CronError as exc:
            raise forms.ValidationError(str(exc)) from None
        return zone

    def clean_max_lateness(self) -> float | None:
        value = self.cleaned_data.get("max_lateness")
        if value is not None and value <= 0:
            raise forms.ValidationError("A positive number of seconds, or empty for no limit.")
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        expression, zone = data.get("expression"), data.get("timezone")
        if expression and zone:
            try:
                if not next_fires(expression, zone, 1):
                    self.add_error("expression", f"{expression!r} never fires")
            except CronError as exc:
                self.add_error("expression", str(exc))
        task_name = data.get("task_name")
        if task_name:
            name = data.get("name") or self.instance.name or "new schedule"
            try:
                data["input"] = check_input(get_task(task_name), name, data.get("input") or {})
            except (FusionJobsError, TypeError, ValueError) as exc:
                self.add_error("input", str(exc))
        return data
