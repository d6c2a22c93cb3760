"""The ``runcrons`` process: declare the crons, then fire them from an APScheduler BlockingScheduler.

Several ``runcrons`` may run (one per host, or a spare): they share a leader lease, and only
the leader evaluates schedules; the others renew nothing and poll the lease every few seconds,
taking over within ``FUSION_JOBS_CRON_LEASE_TTL`` of the leader's death. A tick still fires once
if two of them lead at the same moment (a stalled leader waking up): each tick is claimed with a
unique row first (:mod:`.firing`).

APScheduler provides the loop, the wake-ups, the executor and the job store contract (the
store is :class:`.jobstore.DjangoJobStore`, plain columns). Processing the due jobs is
overridden: APScheduler would enumerate every missed run time in memory (unbounded after a long
outage or a clock jump) and then advance the job itself, whereas here ``fire()`` decides the
missed ticks from the row with the schedule's misfire policy, bounded, and advances the row.

Nothing about the schedules is held in memory between rounds: each round (at most
``FUSION_JOBS_CRON_POLL_INTERVAL`` apart) reads the rows, so a schedule created, edited, paused,
resumed or deleted anywhere (runtime code, the admin, another host) is seen within one poll, by
whichever process leads. Start-up only declares: runtime schedules are left as they are.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.schedulers.blocking import BlockingScheduler
from django.db import DatabaseError, InterfaceError, connections
from django.db.models import Count, Max
from django.utils import timezone

from .. import metrics
from ..api import get_jobs_status
from ..backends.broker import keep_publishers_alive
from ..conf import jobs_settings
from ..exceptions import PublishError
from ..logs import ScrubPasswordFilter, configure_worker_logging
from ..models import CronSchedule
from ..relay import start_relay_thread
from ..reloading import Watch, migration_watch
from ..worker import Output, disabled_reason
from ..workers import Heartbeat
from . import firing
from .declare import declared_names, load_declarations, mark_orphans
from .jobstore import DjangoJobStore, refresh_connections
from .lease import Lease

logger = logging.getLogger("fusion_jobs.crons")


class CurrentThreadExecutor(BaseExecutor):
    """Runs ``fire()`` in the scheduler's own thread: firing only inserts rows and publishes, and
    one thread keeps one database connection and one broker connection, in order."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        try:
            events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
        except BaseException as exc:
            self._run_job_error(job.id, exc, exc.__traceback__)
        else:
            self._run_job_success(job.id, events)


class CronScheduler(BlockingScheduler):
    """A BlockingScheduler whose every wake-up is a poll: connections, lease, retries, due jobs."""

    def __init__(
        self,
        *,
        lease: Lease,
        poll_interval: float,
        clock: firing.Clock = timezone.now,
        publish_fn: firing.PublishFn | None = None,
    ) -> None:
        super().__init__(
            jobstores={"default": DjangoJobStore()},
            executors={"default": CurrentThreadExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
            jobstore_retry_interval=poll_interval,
        )
        self.lease = lease
        self.poll_interval = poll_interval
        self.clock = clock
        self.publish_fn = publish_fn
        self._standby_announced = False
        self._seen: tuple[int, datetime | None] | None = None
        #: Set when a watch asked for a fresh process (migrations applied): run_crons re-executes.
        self.watches: list[Watch] = []
        self.replace_reason: str | None = None

    def _wait(self) -> float:
        # Renew well within the lease's lifetime, however long the poll interval.
        return max(0.05, min(self.poll_interval, self.lease.ttl / 3))

    def _process_jobs(self) -> float | None:
        for watch in self.watches:
            why = watch.changed()
            if why:
                self.replace_reason = why
                self.shutdown(wait=False)
                return None
        try:
            refresh_connections()
            leader = self.lease.acquire()
            metrics.cron_lease(leader)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("database unavailable (%s); retrying in %.0f s", exc, self._wait())
            return self._wait()
        if not leader:
            if not self._standby_announced:
                self._standby_announced = True
                logger.info(
                    "runcrons %s is a standby: the lease is held by %s; taking over if it expires",
                    self.lease.holder,
                    self.lease.current_holder(),
                )
            return self._wait()
        self._standby_announced = False
        publisher = firing.Publisher(self.publish_fn)
        firing.start_round(self.clock, publisher, self.lease.holder)
        try:
            self._note_changes()
            keep_publishers_alive()  # a publish may be an hour away
            firing.publish_pending(publisher=publisher)
            wait = self._fire_due()
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("database unavailable (%s); retrying in %.0f s", exc, self._wait())
            return self._wait()
        except PublishError as exc:
            logger.warning("broker unavailable (%s); retrying in %.0f s", exc, self._wait())
            return self._wait()
        except Exception:
            logger.exception("cron round failed; retrying in %.0f s", self._wait())
            return self._wait()
        return min(wait, self._wait()) if wait is not None else self._wait()

    def _note_changes(self) -> None:
        """Log when the schedules changed since the last round (created, edited, paused, deleted).

        Nothing needs reloading: every round reads the rows (``get_due_jobs``), and ``fire`` re-reads
        the row it fires. The line tells an operator when this process saw a change.
        """
        seen = schedule_signature()
        if self._seen is not None and seen != self._seen:
            logger.info("schedules changed (%d now); this round uses them", seen[0])
        self._seen = seen

    def _fire_due(self) -> float | None:
        """Submit every due job once (``fire`` handles its missed ticks); return seconds to the next."""
        now = self.clock()
        events = []
        with self._jobstores_lock:
            for alias, store in self._jobstores.items():
                for job in store.get_due_jobs(now):
                    executor = self._lookup_executor(job.executor)
                    run_times = [job.next_run_time]
                    executor.submit_job(job, run_times)
                    events.append(JobSubmissionEvent(EVENT_JOB_SUBMITTED, job.id, alias, run_times))
            next_times = [t for t in (s.get_next_run_time() for s in self._jobstores.values()) if t]
        for event in events:
            self._dispatch_event(event)
        if not next_times:
            return None
        return max(0.0, (min(next_times) - self.clock()).total_seconds())


def schedule_signature() -> tuple[int, datetime | None]:
    """How many schedules there are and when the latest changed: one cheap aggregate per round.

    A deletion lowers the count; anything else (a creation, an edit, a pause, a resume, an
    orphaning) moves ``updated_at`` (the admin's and ``ensure_cron``'s writes set it).
    """
    row = CronSchedule.objects.aggregate(count=Count("pk"), latest=Max("updated_at"))
    return int(row["count"]), row["latest"]


def _schedule_lines(now: datetime) -> list[str]:
    lines = []
    for schedule in CronSchedule.objects.all().order_by("name"):
        if schedule.orphaned:
            state = "orphaned (no longer declared; not firing)"
        elif not schedule.enabled:
            state = "disabled"
        elif schedule.paused:
            state = "paused"
        else:
            state = "active"
        policy = schedule.misfire + (
            f", max_lateness {schedule.max_lateness:g} s" if schedule.max_lateness else ""
        )
        nxt = schedule.next_fire_at.isoformat() if schedule.next_fire_at else "-"
        overdue = (
            " (overdue: missed ticks follow the policy)"
            if schedule.next_fire_at and schedule.next_fire_at < now and schedule.active
            else ""
        )
        lines.append(
            f"  {schedule.name}: '{schedule.expression}' {schedule.timezone} -> {schedule.task_name} "
            f"[{state}] {schedule.origin} misfire={policy} next={nxt}{overdue}"
        )
    return lines


def _configure_logging() -> None:
    configure_worker_logging()
    for name in ("fusion_jobs", ""):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, ScrubPasswordFilter) for f in handler.filters):
                handler.addFilter(ScrubPasswordFilter())
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def run_crons(
    *,
    stdout: Output = sys.stdout,
    once: bool = False,
    poll_interval: float | None = None,
    clock: firing.Clock = timezone.now,
) -> int:
    """``manage.py runcrons``: gate, declare, print the configuration and schedules, then fire.

    With ``once`` it fires what is due now, publishes what is pending, and returns.
    """
    reason = disabled_reason()
    if reason:
        stdout.write(reason.replace("nothing to run", "no crons fire") + "\n")
        stdout.flush()
        return 0
    _configure_logging()
    poll = float(poll_interval or jobs_settings.CRON_POLL_INTERVAL)
    lease = Lease(ttl=float(jobs_settings.CRON_LEASE_TTL))
    declarations = load_declarations()
    orphaned = [] if declarations.errors else mark_orphans(declared_names())
    status = get_jobs_status()
    schedules = _schedule_lines(clock())
    stdout.write(
        f"fusion-jobs crons: broker={status['broker']} namespace={status.get('namespace') or '-'} mode={'once' if once else 'scheduler'} "
        f"lease={lease.name} (holder {lease.holder}, ttl {lease.ttl:g} s) poll={poll:g} s "
        f"grace={float(jobs_settings.CRON_GRACE):g} s schedules={len(schedules)} "
        f"registrars={', '.join(declarations.sources) or 'none'}\n"
    )
    for line in schedules:
        stdout.write(line + "\n")
    for error in declarations.errors:
        stdout.write(f"  registration failed: {error} (orphan marking skipped)\n")
    if orphaned:
        stdout.write(f"  newly orphaned: {', '.join(orphaned)}\n")
    stdout.flush()

    if once:
        publisher = firing.Publisher()
        firing.publish_pending(min_age=0, publisher=publisher)
        results = firing.fire_due(clock=clock, publisher=publisher, fired_by=f"{lease.holder} (--once)")
        fired = sum(len(r.fired) for r in results)
        skipped = sum(r.skipped + r.unrecorded for r in results)
        stdout.write(
            f"fusion-jobs crons: fired {fired} tick(s), skipped {skipped}, "
            f"{publisher.published} published, {publisher.deferred} left for retry\n"
        )
        stdout.flush()
        return 0

    metrics_port = int(jobs_settings.CRON_METRICS_PORT)
    if metrics_port:
        address = str(jobs_settings.METRICS_ADDRESS)
        metrics.serve_process_metrics(metrics_port, address)
        stdout.write(f"fusion-jobs crons: Prometheus metrics on http://{address}:{metrics_port}/metrics\n")
        stdout.flush()
    scheduler = CronScheduler(lease=lease, poll_interval=poll, clock=clock)
    scheduler.watches = [w for w in (migration_watch(),) if w]
    heartbeat = Heartbeat("crons", info=lambda: {"leader": lease.held, "lease": lease.name}).start()
    stop_relay = start_relay_thread()  # other runs that never reached the broker (see fusion_jobs.relay)

    def stop(signum: int, frame: object) -> None:
        stop_relay.set()
        if scheduler.state == STATE_RUNNING:
            scheduler.shutdown(wait=False)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    try:
        scheduler.start()
    finally:
        try:
            lease.release()
        except (DatabaseError, InterfaceError):
            logger.warning("could not release the lease; it expires in %.0f s", lease.ttl)
        heartbeat.stop()
        if scheduler.replace_reason is None:
            stdout.write("fusion-jobs crons: stopped\n")
        stdout.flush()
    if scheduler.replace_reason is not None:
        stop_relay.set()
        stdout.write(f"fusion-jobs crons: {scheduler.replace_reason}\n")
        stdout.flush()
        restart_self()
    return 0


def restart_self() -> None:
    """Replace this process with a fresh ``runcrons`` (same command line): new code, new schema.

    Called once the scheduler has stopped between rounds and the lease is released, so nothing is
    in flight; a standby may take the lease meanwhile, which is as safe as any takeover.
    """
    for thread in threading.enumerate():
        if thread.name == "fusion-jobs-relay":  # stopped above: let it finish the publish it is in
            thread.join(timeout=10)
    connections.close_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, list(sys.orig_argv))
