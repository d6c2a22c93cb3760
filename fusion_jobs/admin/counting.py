"""Counting runs without scanning a million rows.

``COUNT(*)`` on PostgreSQL reads every matching row, so a changelist on a large table would pay a
full scan per page view, and an action on "all selected" one more. Counts here are exact while
small and PostgreSQL's estimate beyond that.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

#: Counts up to this many rows are exact; above it the list shows PostgreSQL's estimate.
EXACT_COUNT_LIMIT = 10_000


def bounded_count(queryset: QuerySet[Any], limit: int) -> int:
    """The row count of ``queryset`` up to ``limit + 1``: enough to tell "more than ``limit``"."""
    return queryset.order_by()[: limit + 1].count()


def estimated_count(queryset: QuerySet[Any], exact_limit: int = EXACT_COUNT_LIMIT) -> int:
    """The row count of ``queryset``: exact when small, PostgreSQL's estimate when large.

    Unfiltered, the table's ``pg_class.reltuples`` (kept by autovacuum/ANALYZE) is used once it is
    over ``exact_limit``. Otherwise at most ``exact_limit + 1`` rows are counted, and past that the
    planner's estimate is used. Other databases count exactly.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return queryset.count()
    if not queryset.query.where:
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
            row = cursor.fetchone()
        if row and row[0] is not None and row[0] >= exact_limit:
            return int(row[0])
    bounded = bounded_count(queryset, exact_limit)
    if bounded <= exact_limit:
        return bounded
    return max(bounded, _planner_rows(queryset))


def _planner_rows(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.order_by().query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class RunPaginator(Paginator):
    """A paginator whose count is :func:`estimated_count` (pages past the real end are empty)."""

    @cached_property
    def count(self) -> int:
        if isinstance(self.object_list, QuerySet):
            return estimated_count(self.object_list)
        return super().count
