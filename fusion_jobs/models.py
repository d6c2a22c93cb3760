"""Run history (``JobRun``) and cron schedules (``CronSchedule``): plain columns and JSON, no pickle."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from .registry import Task


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


class RunMode(models.TextChoices):
    WORKER = "worker", "Worker"
    INLINE = "inline", "Inline"


# Status sets: the one home for every group of statuses the code, admin and stats use.
#: A run in one of these states never changes again.
TERMINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED, RunStatus.SKIPPED}
)
#: Waiting for an attempt to start: the relay publishes these and the admin may cancel them.
WAITING_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RETRYING})
#: Not finished yet: waiting or running.
ACTIVE_STATUSES = WAITING_STATUSES | {RunStatus.RUNNING}
#: An attempt ran to an outcome (the body executed): what throughput and duration count.
EXECUTED_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT})
#: The run ended in error.
FAILED_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


# The mode vocabulary: where the work runs, seen from three places, each name fixed by DESIGN.md
# section 2: the gate, ``get_jobs_status()["mode"]`` (``broker``: runs go to workers, ``eager``:
# all inline); a call's handle, ``RunHandle.mode`` (``queued`` or ``inline``); a stored run,
# ``JobRun.mode`` (``RunMode``: ``worker`` or ``inline``).
GATE_BROKER = "broker"
GATE_EAGER = "eager"
HANDLE_QUEUED = "queued"
HANDLE_INLINE = "inline"


class JobRun(models.Model):
    """One run of a task, queued or inline: the source of truth the admin shows."""

    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, help_text="Dramatiq message id."
    )
    task_name = models.CharField(max_length=200)
    queue = models.CharField(max_length=100, default="default")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    mode = models.CharField(max_length=8, choices=RunMode.choices, default=RunMode.WORKER)
    kwargs = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(
        blank=True, default="", help_text="Exception type and message of the last failure."
    )
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started, lost ones included.")
    lost_attempts = models.PositiveIntegerField(default=0, help_text="Attempts whose worker died mid-run.")
    max_retries = models.PositiveIntegerField(default=0)
    execution_timeout = models.FloatField(null=True, blank=True, help_text="Seconds.")
    attempt_log = models.JSONField(
        default=list, blank=True, help_text="One entry per ended attempt: outcome, worker, times, error."
    )

    enqueued_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    worker = models.CharField(
        max_length=200, blank=True, default="", help_text="host:pid of the last attempt."
    )
    enqueued_by = models.CharField(max_length=200, blank=True, default="")
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries", db_index=False
    )

    progress_stage = models.CharField(max_length=100, blank=True, default="")
    progress_done = models.BigIntegerField(null=True, blank=True)
    progress_total = models.BigIntegerField(null=True, blank=True)

    cron = models.ForeignKey(
        "CronSchedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="The cron tick this run is for.")
    skip_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-enqueued_at"]
        verbose_name = "job run"
        permissions = [
            ("retry_jobrun", "Can retry job runs"),
            ("cancel_jobrun", "Can cancel job runs"),
        ]
        indexes = [
            # Trailing key columns (not INCLUDE: every database takes them) give the dashboard and
            # the list index-only scans. A status change can't be HOT, so PostgreSQL adds an entry
            # to every index whose condition the new row meets: partial indexes keep that to four
            # per write (status skips succeeded runs, which the list finds through fj_run_enqueued;
            # the dashboard's holds finished runs; the foreign keys' only rows that have one).
            models.Index(fields=["-enqueued_at", "task_name", "status"], name="fj_run_enqueued"),
            models.Index(
                fields=["status", "-enqueued_at"],
                name="fj_run_status",
                condition=~models.Q(status="succeeded"),
            ),
            models.Index(fields=["task_name", "status", "-enqueued_at"], name="fj_run_task"),
            models.Index(
                fields=["finished_at", "status", "task_name", "started_at"],
                name="fj_run_finished",
                condition=models.Q(finished_at__isnull=False),
            ),
            models.Index(
                fields=["cron", "-enqueued_at"], name="fj_run_cron", condition=models.Q(cron__isnull=False)
            ),
            models.Index(
                fields=["retry_of"], name="fj_run_retry_of", condition=models.Q(retry_of__isnull=False)
            ),
            # The outbox relay's two queries: runs that never reached the broker, by age, and runs
            # waiting for their time (a retry's backoff, enqueue_at()). Each holds only unpublished
            # rows, so it stays small and a poll every second is one short index range scan.
            models.Index(
                fields=["enqueued_at"],
                name="fj_run_unpublished",
                condition=models.Q(
                    published_at__isnull=True, mode="worker", status="queued", next_attempt_at__isnull=True
                ),
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="fj_run_due",
                condition=models.Q(
                    published_at__isnull=True,
                    mode="worker",
                    status__in=["queued", "retrying"],
                    next_attempt_at__isnull=False,
                ),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["cron", "scheduled_for"],
                name="fj_run_one_per_tick",
                condition=models.Q(cron__isnull=False, scheduled_for__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.status}] {self.id}"

    @classmethod
    def new_run(
        cls,
        task: Task | None,
        kwargs: dict[str, Any],
        *,
        queued: bool = True,
        task_name: str = "",
        **columns: Any,
    ) -> JobRun:
        """A new, unsaved run of ``task``: the one place a run row is built (enqueue, crons, relay).

        Queue, retries and timeout come from the task; an inline run is never retried. ``task``
        None: a task this process does not know (a cron whose task is gone), named by ``task_name``.
        ``columns`` set or override any other column.
        """
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "task_name": task.name if task is not None else task_name,
            "queue": task.effective_queue if task is not None else "default",
            "mode": RunMode.WORKER if queued else RunMode.INLINE,
            "kwargs": kwargs,
            "max_retries": task.effective_max_retries if task is not None and queued else 0,
            "execution_timeout": task.effective_timeout if task is not None else None,
        }
        return cls(**{**values, **columns})

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def progress_percent(self) -> float | None:
        if self.progress_total and self.progress_done is not None:
            return max(0.0, min(100.0, 100.0 * self.progress_done / self.progress_total))
        return None

    def as_status(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "task": self.task_name,
            "status": self.status,
            "mode": self.mode,
            "attempts": self.attempts,
            "progress": {
                "stage": self.progress_stage,
                "done": self.progress_done,
                "total": self.progress_total,
                "percent": self.progress_percent,
            },
            "error": self.error,
            "enqueued_at": self.enqueued_at.isoformat() if self.enqueued_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class JobsDashboard(JobRun):
    """No table and no permissions of its own: it gives the jobs dashboard an entry in the admin index."""

    class Meta:
        proxy = True
        verbose_name = "jobs dashboard"
        verbose_name_plural = "jobs dashboard"
        default_permissions = ()


class MisfirePolicy(models.TextChoices):
    LATEST = "latest", "Fire once for the latest missed tick"
    ALL = "all", "Fire every missed tick (capped)"
    SKIP = "skip", "Fire none of the missed ticks"


class CronOrigin(models.TextChoices):
    DECLARED = "declared", "Declared in code"
    RUNTIME = "runtime", "Created at runtime"


class CronSchedule(models.Model):
    """A named cron, fired by ``runcrons``: declared by a registrar, or created at runtime.

    ``origin`` decides its lifetime: a declared one is orphaned when no registrar declares it at a
    ``runcrons`` start; a runtime one (``ensure_cron`` from ordinary code, or the admin) stays
    until ``delete_cron`` or the admin deletes it.
    """

    name = models.CharField(max_length=200, unique=True)
    origin = models.CharField(
        max_length=8,
        choices=CronOrigin.choices,
        default=CronOrigin.DECLARED,
        help_text="Declared by a registrar (orphaned when no longer declared) or created at runtime "
        "(kept until deleted).",
    )
    task_name = models.CharField(max_length=200)
    expression = models.CharField(max_length=120)
    timezone = models.CharField(max_length=64, default="UTC")
    input = models.JSONField(default=dict, blank=True)
    misfire = models.CharField(max_length=8, choices=MisfirePolicy.choices, default=MisfirePolicy.LATEST)
    max_lateness = models.FloatField(
        null=True, blank=True, help_text="Seconds; older missed ticks are skipped."
    )
    enabled = models.BooleanField(default=True, help_text="Declared enabled in code.")
    paused = models.BooleanField(default=False, help_text="Paused from the admin; kept across restarts.")
    orphaned = models.BooleanField(default=False, help_text="No longer declared in code; does not fire.")
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey(JobRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "cron schedule"
        permissions = [
            ("pause_cronschedule", "Can pause and resume cron schedules"),
            ("run_cronschedule", "Can run cron schedules now"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"

    @property
    def active(self) -> bool:
        return self.enabled and not self.paused and not self.orphaned


class WorkerLease(models.Model):
    """A named lease (the runcrons leader); an optimisation, never the only guard."""

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=200)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"


class WorkerKind(models.TextChoices):
    WORKER = "worker", "Worker process"
    CRONS = "crons", "runcrons"


class WorkerHeartbeat(models.Model):
    """One ``rundramatiq`` worker process or ``runcrons``, as it last reported itself.

    Each process upserts its own row every ``FUSION_JOBS_WORKER_HEARTBEAT`` seconds from a
    background thread (counters are kept in memory, never written per run), so "is anything
    consuming queue X?" is one indexed read. Rows of processes that stopped or died age out:
    stale after a few missed beats, gone later, deleted after ``FUSION_JOBS_WORKER_FORGET_AFTER``.
    """

    id = models.CharField(max_length=200, primary_key=True, help_text="kind:host:pid")
    kind = models.CharField(max_length=8, choices=WorkerKind.choices, default=WorkerKind.WORKER)
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    supervisor_pid = models.PositiveIntegerField(null=True, blank=True)
    version = models.CharField(max_length=50, blank=True, default="")
    queues = models.JSONField(default=list, blank=True, help_text="Logical queue names it consumes.")
    processes = models.PositiveIntegerField(default=1, help_text="Processes of its rundramatiq.")
    threads = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set when it stopped cleanly.")
    runs_done = models.BigIntegerField(default=0, help_text="Attempts that ended without an error.")
    runs_failed = models.BigIntegerField(default=0, help_text="Attempts that ended with an error.")
    current_runs = models.JSONField(default=list, blank=True, help_text="Runs in progress: id, task.")
    info = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["kind", "host", "pid"]
        verbose_name = "worker"
        default_permissions = ("view",)
        indexes = [models.Index(fields=["last_seen_at"], name="fj_worker_seen")]

    def __str__(self) -> str:
        return self.id


class RunRollup(models.Model):
    """Runs that ended in one time bucket, per task: the dashboard's charts read these, not the runs.

    Derived from ``JobRun`` by :func:`fusion_jobs.rollup.refresh_rollup`, which recomputes whole
    buckets from the runs (so it is exact and idempotent), at three resolutions (``resolution``
    seconds: 60, 900, 3600). Histograms are sparse ``{bin: count}`` over fixed log bins.
    """

    resolution = models.PositiveIntegerField(help_text="Bucket length in seconds.")
    bucket = models.DateTimeField(help_text="Start of the bucket (runs by finished_at).")
    task_name = models.CharField(max_length=200)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    timed_out = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    duration_sum = models.FloatField(default=0.0)
    duration_min = models.FloatField(null=True, blank=True)
    duration_max = models.FloatField(null=True, blank=True)
    duration_hist = models.JSONField(default=dict, blank=True)
    wait_count = models.PositiveIntegerField(default=0)
    wait_sum = models.FloatField(default=0.0)
    wait_min = models.FloatField(null=True, blank=True)
    wait_max = models.FloatField(null=True, blank=True)
    wait_hist = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "run rollup"
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["resolution", "bucket", "task_name"], name="fj_rollup_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} @ {self.bucket} ({self.resolution} s)"


class RollupState(models.Model):
    """How far the rollup is complete: buckets before ``through`` are stored, later ones read from runs."""

    name = models.CharField(max_length=50, primary_key=True)
    through = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.name} through {self.through}"
