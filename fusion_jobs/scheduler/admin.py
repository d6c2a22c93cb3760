"""Admin for cron schedules (registered from fusion_jobs.admin)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ..models import CronSchedule


@admin.register(CronSchedule)
class CronScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "task_name", "expression", "timezone", "next_fire_at", "enabled", "paused", "orphaned")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
