"""Per-task, per-time-bucket summaries of ended runs, so the dashboard's charts never scan a week of runs.

A bucket holds the runs that *ended* in it (``finished_at``): counts by outcome, the sum, min, max
and a histogram of durations (``started_at`` → ``finished_at``) and of queue waits (``enqueued_at``,
or the cron tick ``scheduled_for`` when later, → ``started_at``; first attempts only: a retried
run's last wait is not stored on the run). Histograms use fixed log bins (a factor of 2^(1/4),
about 9% wide), so percentiles merged over any span are within a bin of exact, and are clamped to
the span's exact min and max.

:func:`refresh_rollup` *recomputes* whole minute buckets from the runs (delete then insert, under a
row lock on :class:`~fusion_jobs.models.RollupState`) and sums them into the 15-minute and hourly
buckets, so running it twice, or after a writer retried a batch, gives the same rows: it counts
runs, never events. It recomputes the last :data:`LAG` before its watermark each time, which takes
in runs whose end was written late. Rows older than ``FUSION_JOBS_RUN_RETENTION_DAYS`` are deleted
with it, like the runs they summarise. ``runcrons`` runs it every five minutes
(``fusion-jobs-rollup``, ``FUSION_JOBS_CRON_ROLLUP``); the dashboard reads stored buckets up to the
watermark and the runs after it, so it is exact even when the cron is late or off (only slower).
"""

from .cells import OUTCOMES, Cell, Cells, Dist, bin_bounds, floor_time, hist_bin
from .store import (
    LAG,
    MINUTE,
    RESOLUTIONS,
    RefreshResult,
    cells_from_rollup,
    cells_from_runs,
    refresh_rollup,
    watermark,
)
from .window import Summary, window_cells, window_summary

__all__ = [
    "LAG",
    "MINUTE",
    "OUTCOMES",
    "RESOLUTIONS",
    "Cell",
    "Cells",
    "Dist",
    "RefreshResult",
    "Summary",
    "bin_bounds",
    "cells_from_rollup",
    "cells_from_runs",
    "floor_time",
    "hist_bin",
    "refresh_rollup",
    "watermark",
    "window_cells",
    "window_summary",
]
