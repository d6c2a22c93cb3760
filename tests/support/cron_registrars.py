"""Registrars the scheduler tests name in FUSION_JOBS_CRON_REGISTRARS (in-process and in runcrons subprocesses)."""

from __future__ import annotations

import fusion_jobs

calls: list[str] = []


def register_every_minute() -> None:
    """The cron the multi-process test runs: every minute, recording a Marker per execution."""
    calls.append("every-minute")
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-every-minute", "* * * * *", {"label": "every-minute"})


def register_two() -> None:
    calls.append("two")
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-a", "*/5 * * * *", {"label": "a"})
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-b", "0 * * * *", {"label": "b"})


def register_only_a() -> None:
    calls.append("only-a")
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-a", "*/5 * * * *", {"label": "a"})


def register_broken() -> None:
    calls.append("broken")
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-broken", "61 * * * *", {"label": "x"})


def register_yearly() -> None:
    """A declared cron that is never due in a test (its one tick a year is not now)."""
    calls.append("yearly")
    fusion_jobs.ensure_cron("t-cron-record", "t-cron-new-year", "0 0 1 1 *", {"label": "new-year"})
