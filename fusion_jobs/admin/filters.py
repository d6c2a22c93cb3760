"""List filters whose choices cost no query (no ``SELECT DISTINCT`` over millions of rows)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from ..registry import all_tasks
from ..workers import GONE, GONE_AFTER_BEATS, LIVE, STALE, STALE_AFTER_BEATS, heartbeat_interval


class RegistryFilter(admin.SimpleListFilter):
    """Choices from the task registry; a value no longer declared in code still shows as selected."""

    parameter_name: str  # the JobRun field filtered on

    def known(self) -> set[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = self.known()
        current = self.value()
        if current:
            names.add(current)
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.parameter_name: value}) if value else queryset


class TaskFilter(RegistryFilter):
    title = "task"
    parameter_name = "task_name"

    def known(self) -> set[str]:
        return set(all_tasks())


class QueueFilter(RegistryFilter):
    title = "queue"
    parameter_name = "queue"

    def known(self) -> set[str]:
        return {task_obj.effective_queue for task_obj in all_tasks().values()}


class EnqueuedWithinFilter(admin.SimpleListFilter):
    """Relative date ranges on the indexed ``enqueued_at``, in place of a date hierarchy.

    Any absolute range also works from the URL: ``?enqueued_at__gte=2026-01-01&enqueued_at__lt=2026-02-01``.
    """

    title = "enqueued"
    parameter_name = "enqueued"
    RANGES = {
        "1h": ("Past hour", timedelta(hours=1)),
        "24h": ("Past 24 hours", timedelta(days=1)),
        "7d": ("Past 7 days", timedelta(days=7)),
        "30d": ("Past 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _delta) in self.RANGES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in self.RANGES:
            return queryset.filter(enqueued_at__gte=timezone.now() - self.RANGES[value][1])
        return queryset


class WorkerStateFilter(admin.SimpleListFilter):
    """A worker's state (live, stale, gone) as a range of its last heartbeat."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(LIVE, "live"), (STALE, "stale"), (GONE, "gone")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now, beat = timezone.now(), heartbeat_interval()
        live_since = now - timedelta(seconds=STALE_AFTER_BEATS * beat)
        gone_before = now - timedelta(seconds=GONE_AFTER_BEATS * beat)
        running = queryset.filter(stopped_at__isnull=True)
        if self.value() == LIVE:
            return running.filter(last_seen_at__gte=live_since)
        if self.value() == STALE:
            return running.filter(last_seen_at__lt=live_since, last_seen_at__gte=gone_before)
        if self.value() == GONE:
            return queryset.filter(Q(stopped_at__isnull=False) | Q(last_seen_at__lt=gone_before))
        return queryset
