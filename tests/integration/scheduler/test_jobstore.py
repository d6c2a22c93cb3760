"""APScheduler's BaseJobStore contract, run against MemoryJobStore (the reference) and DjangoJobStore.

Where DjangoJobStore differs on purpose, the test says so: re-adding an identical job is a
no-op instead of ConflictingIdError (every runcrons start re-declares its crons), and removing a
job marks its row orphaned instead of deleting it (run history stays linked).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from django.db import connection

from fusion_jobs.models import CronSchedule
from fusion_jobs.scheduler.firing import fire
from fusion_jobs.scheduler.jobstore import FIRE_REF, DjangoJobStore
from fusion_jobs.scheduler.triggers import CrontabTrigger

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def scheduler() -> BlockingScheduler:
    return BlockingScheduler(timezone=UTC)


@pytest.fixture(params=["memory", "django"])
def store(request: Any, scheduler: BlockingScheduler) -> Any:
    store = MemoryJobStore() if request.param == "memory" else DjangoJobStore()
    store.start(scheduler, "default")
    yield store
    store.shutdown()


def is_ours(store: Any) -> bool:
    return isinstance(store, DjangoJobStore)


def make_job(
    scheduler: BlockingScheduler,
    name: str,
    next_run_time: datetime | None,
    expr: str = "*/5 * * * *",
    label: str = "x",
) -> Job:
    return Job(
        scheduler,
        id=name,
        func=fire,
        args=(name,),
        kwargs={"task": "t-cron-record", "input": {"label": label}},
        trigger=CrontabTrigger(expr, "UTC"),
        executor="default",
        name=f"{name} -> t-cron-record",
        misfire_grace_time=None,
        coalesce=True,
        max_instances=1,
        next_run_time=next_run_time,
    )


def test_lookup_of_a_missing_job_returns_none(store):
    assert store.lookup_job("t-cron-nope") is None


def test_add_then_lookup_gives_the_same_job(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-a", T0, label="hello"))
    job = store.lookup_job("t-cron-a")
    assert job.id == "t-cron-a"
    assert job.func_ref == FIRE_REF and job.func is fire
    assert tuple(job.args) == ("t-cron-a",)
    assert job.kwargs == {"task": "t-cron-record", "input": {"label": "hello"}}
    assert job.trigger == CrontabTrigger("*/5 * * * *", "UTC")
    assert job.next_run_time == T0
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)


def test_due_jobs_are_those_at_or_before_now_sorted_by_next_run_time(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-c", T0 + timedelta(minutes=1)))
    store.add_job(make_job(scheduler, "t-cron-b", T0))
    store.add_job(make_job(scheduler, "t-cron-a", T0))  # same time: ordered by id
    store.add_job(make_job(scheduler, "t-cron-d", T0 + timedelta(minutes=10)))
    store.add_job(make_job(scheduler, "t-cron-paused", None))
    due = store.get_due_jobs(T0 + timedelta(minutes=1))
    assert [job.id for job in due] == ["t-cron-a", "t-cron-b", "t-cron-c"]
    assert [job.id for job in store.get_due_jobs(T0 - timedelta(seconds=1))] == []


def test_next_run_time_is_the_earliest_active_one(store, scheduler):
    assert store.get_next_run_time() is None
    store.add_job(make_job(scheduler, "t-cron-paused", None))
    assert store.get_next_run_time() is None
    store.add_job(make_job(scheduler, "t-cron-late", T0 + timedelta(hours=1)))
    store.add_job(make_job(scheduler, "t-cron-early", T0))
    assert store.get_next_run_time() == T0


def test_all_jobs_sorted_with_paused_ones_last(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-paused-b", None))
    store.add_job(make_job(scheduler, "t-cron-late", T0 + timedelta(hours=1)))
    store.add_job(make_job(scheduler, "t-cron-paused-a", None))
    store.add_job(make_job(scheduler, "t-cron-early", T0))
    assert [job.id for job in store.get_all_jobs()] == [
        "t-cron-early",
        "t-cron-late",
        "t-cron-paused-a",
        "t-cron-paused-b",
    ]


def test_adding_a_different_job_under_an_existing_id_conflicts(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-a", T0, expr="*/5 * * * *"))
    with pytest.raises(ConflictingIdError):
        store.add_job(make_job(scheduler, "t-cron-a", T0, expr="0 * * * *"))
    assert store.lookup_job("t-cron-a").trigger == CrontabTrigger("*/5 * * * *", "UTC")


def test_adding_the_same_job_again(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    again = make_job(scheduler, "t-cron-a", T0 + timedelta(hours=5))
    if is_ours(store):
        # Idempotent by design: runcrons re-declares every cron at start-up; the stored next
        # fire time is kept, so a restart neither resets nor skips the schedule.
        store.add_job(again)
        assert store.lookup_job("t-cron-a").next_run_time == T0
        assert CronSchedule.objects.filter(name="t-cron-a").count() == 1
    else:
        with pytest.raises(ConflictingIdError):
            store.add_job(again)


def test_update_replaces_the_job_and_its_position(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    store.add_job(make_job(scheduler, "t-cron-b", T0 + timedelta(minutes=5)))
    job = store.lookup_job("t-cron-a")
    job._modify(next_run_time=T0 + timedelta(minutes=10), trigger=CrontabTrigger("0 * * * *", "UTC"))
    store.update_job(job)
    assert [j.id for j in store.get_all_jobs()] == ["t-cron-b", "t-cron-a"]
    assert store.lookup_job("t-cron-a").trigger == CrontabTrigger("0 * * * *", "UTC")
    assert store.get_next_run_time() == T0 + timedelta(minutes=5)


def test_update_of_a_missing_job_raises(store, scheduler):
    with pytest.raises(JobLookupError):
        store.update_job(make_job(scheduler, "t-cron-ghost", T0))


def test_pausing_via_update_excludes_the_job_from_due_jobs(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    job = store.lookup_job("t-cron-a")
    job._modify(next_run_time=None)
    store.update_job(job)
    assert store.get_due_jobs(T0 + timedelta(days=1)) == []
    assert store.lookup_job("t-cron-a").next_run_time is None
    assert store.get_next_run_time() is None


def test_remove_and_remove_missing(store, scheduler):
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    store.add_job(make_job(scheduler, "t-cron-b", T0))
    store.remove_job("t-cron-a")
    assert store.lookup_job("t-cron-a") is None
    assert [job.id for job in store.get_all_jobs()] == ["t-cron-b"]
    with pytest.raises(JobLookupError):
        store.remove_job("t-cron-a")
    if is_ours(store):
        # Not deleted: the row stays, orphaned, with its run history; adding it again restores it.
        assert CronSchedule.objects.get(name="t-cron-a").orphaned is True
        store.add_job(make_job(scheduler, "t-cron-a", T0 + timedelta(hours=1)))
        assert store.lookup_job("t-cron-a").next_run_time == T0 + timedelta(hours=1)


def test_remove_all_jobs(store, scheduler):
    for name in ("t-cron-a", "t-cron-b"):
        store.add_job(make_job(scheduler, name, T0))
    store.remove_all_jobs()
    assert store.get_all_jobs() == []
    assert store.get_due_jobs(T0 + timedelta(days=1)) == []
    assert store.get_next_run_time() is None


def test_jobs_persist_across_store_instances_as_plain_columns(scheduler):
    DjangoJobStore().add_job(make_job(scheduler, "t-cron-a", T0, label="persisted"))
    fresh = DjangoJobStore()
    fresh.start(scheduler, "default")
    assert fresh.lookup_job("t-cron-a").kwargs["input"] == {"label": "persisted"}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            [CronSchedule._meta.db_table],
        )
        types = dict(cursor.fetchall())
    assert "bytea" not in types.values()  # nothing pickled, nothing binary
    row = CronSchedule.objects.get(name="t-cron-a")
    assert (row.task_name, row.expression, row.timezone, row.input, row.next_fire_at) == (
        "t-cron-record",
        "*/5 * * * *",
        "UTC",
        {"label": "persisted"},
        T0,
    )


def test_a_job_that_needs_pickle_is_refused(scheduler):
    store = DjangoJobStore()
    foreign = Job(
        scheduler,
        id="t-cron-foreign",
        func=print,
        args=(),
        kwargs={},
        trigger=CronTrigger(minute="*"),
        executor="default",
        name="foreign",
        misfire_grace_time=1,
        coalesce=False,
        max_instances=1,
        next_run_time=T0,
    )
    with pytest.raises(ValueError, match="cannot be stored as plain columns"):
        store.add_job(foreign)
    assert not CronSchedule.objects.exists()
    with pytest.raises(TypeError, match="never pickled"):
        __import__("pickle").dumps(CrontabTrigger("* * * * *"))


def test_admin_pause_and_disable_read_as_paused_jobs(scheduler):
    store = DjangoJobStore()
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    store.add_job(make_job(scheduler, "t-cron-b", T0))
    CronSchedule.objects.filter(name="t-cron-a").update(paused=True)
    CronSchedule.objects.filter(name="t-cron-b").update(enabled=False)
    assert store.get_due_jobs(T0 + timedelta(days=1)) == []
    assert [job.next_run_time for job in store.get_all_jobs()] == [None, None]


@pytest.mark.parametrize(
    ("attribute", "value"), [("max_instances", 6), ("coalesce", False), ("misfire_grace_time", 30)]
)
def test_an_attribute_the_store_cannot_keep_is_refused_not_dropped(store, scheduler, attribute, value):
    # APScheduler's own test_update_job sets max_instances=6 and reads it back; a store that keeps
    # every cron at one instance must refuse it, not silently read back 1.
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    job = store.lookup_job("t-cron-a")
    job._modify(**{attribute: value})
    other = make_job(scheduler, "t-cron-b", T0)
    other._modify(**{attribute: value})
    if is_ours(store):
        with pytest.raises(ValueError, match=rf"its {attribute} is {value!r}"):
            store.update_job(job)
        with pytest.raises(ValueError, match="cannot be stored as plain columns"):
            store.add_job(other)
        assert getattr(store.lookup_job("t-cron-a"), attribute) != value
        assert store.lookup_job("t-cron-b") is None
    else:
        store.update_job(job)
        assert getattr(store.lookup_job("t-cron-a"), attribute) == value


def test_a_row_that_no_longer_loads_is_reported_once_not_at_every_poll(scheduler, caplog):
    """A row written before the strict parser stays in the table; runcrons polls every few seconds."""
    import logging

    store = DjangoJobStore()
    store.start(scheduler, "default")
    store.add_job(make_job(scheduler, "t-cron-a", T0))
    store.add_job(make_job(scheduler, "t-cron-old", T0))
    CronSchedule.objects.filter(name="t-cron-old").update(expression="* * * jan5 *")
    with caplog.at_level(logging.ERROR, logger="fusion_jobs.crons"):
        for _ in range(3):
            assert [job.id for job in store.get_due_jobs(T0)] == ["t-cron-a"]
        reported = [r for r in caplog.records if "t-cron-old" in r.getMessage()]
        assert len(reported) == 1 and "jan5" in reported[0].getMessage()
        CronSchedule.objects.filter(name="t-cron-old").update(expression="* * * feb- *")  # broken anew
        store.get_due_jobs(T0)
        assert len([r for r in caplog.records if "t-cron-old" in r.getMessage()]) == 2
