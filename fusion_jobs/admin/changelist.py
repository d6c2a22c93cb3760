"""What every fusion-jobs admin page builds on: a changelist that refuses a filter PostgreSQL cannot
take, and a read-only admin for the rows only the workers write.

PostgreSQL refuses a NUL in any query parameter (psycopg raises ``DataError`` when the page's
queryset is evaluated, a 500). No stored value holds one, so such a filter is invalid: Django's
``IncorrectLookupParameters`` sends the user back to the list with ``?e=1``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest

#: Columns the run list needs; kwargs, result, traceback and the attempt log stay out of its query.
LIST_FIELDS = (
    "id",
    "task_name",
    "queue",
    "status",
    "mode",
    "attempts",
    "lost_attempts",
    "progress_stage",
    "progress_done",
    "progress_total",
    "enqueued_at",
    "started_at",
    "finished_at",
    "published_at",  # with next_attempt_at: a waiting run's start time in the status column
    "next_attempt_at",
)


class StorableFiltersChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        if any(
            "\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()
        ):
            raise IncorrectLookupParameters("a filter value contains a NUL character")
        return super().get_queryset(request, exclude_parameters)


class RunChangeList(StorableFiltersChangeList):
    """The run list without the big columns: kwargs, result, traceback and attempt log."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).only(*LIST_FIELDS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the workers only (runs, heartbeats): nobody adds, edits or deletes them by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type:
        return StorableFiltersChangeList
