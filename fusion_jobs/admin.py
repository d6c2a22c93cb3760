"""Read-only admin for runs and schedules (actions and the dashboard come with the runs issue)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import CronSchedule, JobRun


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("task_name", "status", "mode", "attempts", "enqueued_at", "started_at", "finished_at")
    list_filter = ("status", "mode", "queue", "task_name")
    search_fields = ("=id", "task_name")
    date_hierarchy = "enqueued_at"
    show_full_result_count = False


@admin.register(CronSchedule)
class CronScheduleAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "task_name",
        "expression",
        "timezone",
        "next_fire_at",
        "enabled",
        "paused",
        "orphaned",
    )
