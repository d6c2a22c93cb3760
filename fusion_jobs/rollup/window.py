"""A window of the dashboard: stored buckets up to the watermark, then the runs after it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction

from ..models import RunRollup
from ..recording import db_alias
from .cells import OUTCOMES, Cell, Cells, floor_time, merge_cells
from .store import MINUTE, cells_from_rollup, cells_from_runs, watermark


def _split(
    since: datetime, now: datetime, resolution: int
) -> tuple[datetime | None, datetime | None, datetime]:
    """The watermark, where stored ``resolution`` buckets give way to stored minutes (None: nothing
    stored is used), and the end of the window, for runs that ended in ``[since, now]``."""
    mark = watermark()
    end = now + timedelta(microseconds=1)
    if mark is None or mark <= since:
        return mark, None, end
    mark = min(mark, floor_time(now, MINUTE))
    return mark, max(since, floor_time(mark, resolution)), end


def window_cells(
    since: datetime, now: datetime, resolution: int, task_name: str | None = None
) -> tuple[Cells, datetime | None]:
    """Runs that ended in ``[since, now]`` in buckets of ``resolution`` (``since`` aligned on it).

    Stored ``resolution`` buckets wholly before the watermark, stored minutes up to it, runs after.
    Returns the cells and the watermark used.
    """
    mark, whole, end = _split(since, now, resolution)
    if mark is None or whole is None:
        return cells_from_runs(since, end, resolution, task_name), mark
    cells: Cells = {}
    parts: Iterable[Cells] = (
        cells_from_rollup(resolution, since, whole, resolution, task_name),
        cells_from_rollup(MINUTE, whole, mark, resolution, task_name),
        cells_from_runs(mark, end, resolution, task_name),
    )
    for part in parts:
        merge_cells(cells, part)
    return cells, mark


@dataclass
class Summary:
    """A window's runs summed per bucket and per task; ``mark`` is the watermark used (None: all from runs)."""

    by_bucket: dict[datetime, Cell]
    by_task: dict[str, Cell]
    mark: datetime | None

    def add(self, cells: Cells) -> None:
        for (bucket, task_name), cell in cells.items():
            self.by_bucket.setdefault(bucket, Cell()).merge(cell)
            self.by_task.setdefault(task_name, Cell()).merge(cell)


def window_summary(since: datetime, now: datetime, resolution: int, task_name: str | None = None) -> Summary:
    """Like :func:`window_cells`, summed per bucket and per task; on PostgreSQL the stored part is
    summed by the database (``GROUPING SETS`` over ``jsonb_each_text``), so a week costs two queries
    over a few thousand rows instead of as many histogram merges in Python.
    """
    alias = db_alias()
    if connections[alias].vendor != "postgresql":
        cells, mark = window_cells(since, now, resolution, task_name)
        summary = Summary({}, {}, mark)
        summary.add(cells)
        return summary
    mark, whole, end = _split(since, now, resolution)
    if mark is None or whole is None:
        summary = Summary({}, {}, mark)
        summary.add(cells_from_runs(since, end, resolution, task_name))
        return summary
    summary = _stored_summary(alias, resolution, since, whole, mark, task_name)
    summary.mark = mark
    summary.add(cells_from_runs(mark, end, resolution, task_name))
    return summary


_SOURCE_SQL = """
SELECT CASE WHEN resolution = %(res)s THEN bucket ELSE %(whole)s END AS b, task_name AS t, *
FROM {table}
WHERE ((resolution = %(res)s AND bucket >= %(since)s AND bucket < %(whole)s)
    OR (resolution = %(minute)s AND bucket >= %(whole)s AND bucket < %(mark)s))
  AND (%(task)s::text IS NULL OR task_name = %(task)s::text)
"""
_SCALARS_SQL = """
WITH src AS ({source})
SELECT b, t, SUM(succeeded), SUM(failed), SUM(timed_out), SUM(cancelled), SUM(skipped),
       SUM(duration_sum), MIN(duration_min), MAX(duration_max),
       SUM(wait_count), SUM(wait_sum), MIN(wait_min), MAX(wait_max)
FROM src GROUP BY GROUPING SETS ((b), (t))
"""
_HIST_SQL = """
WITH src AS ({source}),
bins AS (
    SELECT b, t, 'd' AS kind, h.key, SUM(h.value::int) AS n FROM src, jsonb_each_text(duration_hist) AS h
    GROUP BY GROUPING SETS ((b, h.key), (t, h.key))
    UNION ALL
    SELECT b, t, 'w', h.key, SUM(h.value::int) FROM src, jsonb_each_text(wait_hist) AS h
    GROUP BY GROUPING SETS ((b, h.key), (t, h.key))
)
SELECT b, t, kind, jsonb_object_agg(key, n)::text FROM bins GROUP BY b, t, kind
"""


def _stored_summary(
    alias: str, resolution: int, since: datetime, whole: datetime, mark: datetime, task_name: str | None
) -> Summary:
    source = _SOURCE_SQL.format(table=connections[alias].ops.quote_name(RunRollup._meta.db_table))
    params: dict[str, Any] = {
        "res": resolution,
        "minute": MINUTE,
        "since": since,
        "whole": whole,
        "mark": mark,
        "task": task_name,
    }
    summary = Summary({}, {}, None)

    def cell_of(bucket: datetime | None, task: str | None) -> Cell:
        if bucket is not None:
            return summary.by_bucket.setdefault(bucket, Cell())
        return summary.by_task.setdefault(task or "", Cell())

    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        # A week expands to ~100k (bucket, bin) rows: JIT compilation would cost more than the query
        # (its estimate of jsonb_each's rows crosses jit_above_cost), and the hash needs some memory.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '32MB'")
        cursor.execute(_SCALARS_SQL.format(source=source), params)
        for bucket, task, *counts, d_sum, d_min, d_max, w_count, w_sum, w_min, w_max in cursor.fetchall():
            cell = cell_of(bucket, task)
            cell.counts = {o: int(n) for o, n in zip(OUTCOMES, counts, strict=True) if n}
            cell.duration.total, cell.duration.low, cell.duration.high = float(d_sum or 0), d_min, d_max
            cell.wait.count, cell.wait.total = int(w_count or 0), float(w_sum or 0)
            cell.wait.low, cell.wait.high = w_min, w_max
        cursor.execute(_HIST_SQL.format(source=source), params)
        for bucket, task, kind, bins in cursor.fetchall():
            dist = cell_of(bucket, task).duration if kind == "d" else cell_of(bucket, task).wait
            dist.hist = {int(index): int(n) for index, n in json.loads(bins).items()}
            if kind == "d":
                dist.count = sum(dist.hist.values())
    return summary
