"""Read-only admin for runs (actions and the dashboard come with the runs issue)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import JobRun
from .scheduler import admin as _schedule_admin  # noqa: F401  (registers CronSchedule)


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
