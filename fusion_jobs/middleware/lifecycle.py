"""Run recording and retries on the worker, in one middleware so their order is never in doubt.

Before a message runs, its ``JobRun`` moves to ``running`` (or the message is skipped: cancelled,
already finished, a duplicate delivery, a worker lost too often). After it runs, the outcome is
written *before* Dramatiq acks the message, so a SIGKILL can never leave a finished run looking
unfinished while its message is gone. Retries replace Dramatiq's ``Retries`` middleware: a
retry is recorded (``retrying``, next attempt time, unpublished) and the outbox relay publishes it
when it is due, so no delay is ever held as an unacked message in a worker.

Transitions go through the process's batch writer (``fusion_jobs.recording.writer``), which group-commits
the transitions of all worker threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, DataError, InterfaceError
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded

from ..conf import jobs_settings
from ..context import RunContext, activate, deactivate
from ..encoder import record_malformed
from ..exceptions import TaskArgumentsError
from ..models import RunMode, RunStatus
from ..recording import (
    Attempt,
    EndOp,
    Skip,
    StartOp,
    end_op_failure,
    end_op_retry,
    end_op_success,
)
from ..recording.writer import writer
from ..registry import Task, get_task
from .db import requeue_for_db_outage
from .validation import quiet_repeated_lines

logger = logging.getLogger("fusion_jobs.worker")

#: How long an outcome write keeps retrying through a database outage before giving up.
OUTCOME_WRITE_PATIENCE = 60.0


def backoff_seconds(task_obj: Task, retries_done: int) -> float:
    """Exponential backoff with jitter: ``min * 2**retries`` (up to 1.5x), capped at ``max``.

    The exponent stops at 64 (the cap is reached long before): ``2**retries`` past ~1020 retries
    does not fit a float, and a message may claim up to 2**31 - 1 retries done.
    """
    low = task_obj.min_backoff or float(jobs_settings.RETRY_MIN_BACKOFF)
    high = task_obj.max_backoff or float(jobs_settings.RETRY_MAX_BACKOFF)
    base = min(high, low * 2.0 ** min(retries_done, 64))
    return min(high, base * random.uniform(1.0, 1.5))


def _write_outcome(op: EndOp) -> bool:
    """Write an attempt's outcome, retrying through a database restart; True if it was recorded."""
    deadline = time.monotonic() + OUTCOME_WRITE_PATIENCE
    delay = 0.5
    while True:
        try:
            writer.apply(op)
            return bool(op.outcome)
        except (DatabaseError, InterfaceError) as exc:
            if time.monotonic() >= deadline:
                logger.error(
                    "could not record the outcome of run %s (database unavailable for %.0f s): %s",
                    op.attempt.run_id,
                    OUTCOME_WRITE_PATIENCE,
                    exc,
                )
                return False
            logger.warning("database unavailable recording run %s, retrying: %s", op.attempt.run_id, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class RunLifecycle(Middleware):
    """Owns each delivery's state in this process, from its start to its outcome.

    Kept per delivery (the ``MessageProxy``), never per message id: a duplicate delivery of a
    running run is skipped without touching the state of the delivery that runs it. All hooks for
    one delivery run in the same worker thread; :class:`.hard_limit.HardTimeLimit` asks through
    :meth:`record_hard_timeout` and :meth:`record_thread_death` from its own thread.
    """

    def __init__(self) -> None:
        self._deliveries: dict[int, Delivery] = {}  # id(MessageProxy) -> its delivery

    @property
    def actor_options(self) -> set[str]:
        # Dramatiq's Retries options, as this middleware replaces Retries (``declare_actor`` passes
        # ``max_retries`` and ``throws``); the values that count are the registered task's.
        return {"max_retries", "min_backoff", "max_backoff", "throws"}

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        quiet_repeated_lines()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        task_obj = get_task(message.actor_name)  # the encoder let through only registered tasks
        op = StartOp(
            message.message_id,
            task_obj.name,
            redelivered=bool(getattr(message, "redelivered", False)),
            mode=RunMode.WORKER,
            kwargs=dict(message.kwargs),
            queue=message.queue_name,
            retries_done=int(message.options.get("retries", 0)),
        )
        # Registered before the write: an exception landing while it is applied (a time limit)
        # still finds the attempt it started in after_process_message.
        delivery = self._deliveries[id(message)] = Delivery(threading.get_ident(), op)
        try:
            writer.apply(op)
        except DataError as exc:
            # The database refused the message's content (the encoder's checks should have caught
            # it): a bad message, not an outage to wait out.
            self._deliveries.pop(id(message), None)
            reason = f"the database cannot store its arguments ({type(exc).__name__}: {str(exc)[:300]})"
            logger.error("rejecting run %s to the dead-letter queue: %s", message.message_id, reason)
            message.fail()
            record_malformed(reason, message.encode(), dict(message.asdict()))
            raise SkipMessage(reason) from None
        except (DatabaseError, InterfaceError) as exc:
            self._deliveries.pop(id(message), None)
            requeue_for_db_outage(broker, message, exc, "starting")
        started = op.outcome
        if isinstance(started, Skip) or started is None:
            self._deliveries.pop(id(message), None)
            reason = started.reason if started else "not started"
            logger.info("skipping %s run %s: %s", task_obj.name, message.message_id, reason)
            raise SkipMessage(reason)
        delivery.ctx = RunContext(started)
        delivery.token = activate(delivery.ctx)

    def before_nack(self, broker: Broker, message: MessageProxy) -> None:
        """Dramatiq dead-letters a message for an undeclared actor by itself; leave a run saying why."""
        if not broker.actors.get(message.actor_name):
            record_malformed(f"unknown task {message.actor_name!r}", message.encode(), dict(message.asdict()))

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        delivery = self._deliveries.pop(id(message), None)
        if delivery is None or delivery.ctx is None:
            return
        # Started, then refused by a middleware after this one: the run must not stay running.
        deactivate(delivery.token)
        exc = RuntimeError("the message was refused after its start was recorded; see the worker log")
        _write_outcome(end_op_failure(delivery.ctx.attempt, exc))

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        delivery = self._deliveries.pop(id(message), None)
        if delivery is None:
            return
        if delivery.ctx is not None:
            deactivate(delivery.token)
            ctx = delivery.ctx
        elif isinstance(delivery.start.outcome, Attempt):
            # Interrupted right after its start was written; the task never ran.
            ctx = RunContext(delivery.start.outcome)
            exception = exception or RuntimeError("the task did not run after its start was recorded")
        else:
            return
        attempt = ctx.attempt
        if exception is None:
            _write_outcome(end_op_success(attempt, ctx.result))
            return
        task_obj = get_task(message.actor_name)
        retries_done = int(message.options.get("retries", 0))
        timed_out = isinstance(exception, TimeLimitExceeded)
        final_status = RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED
        retryable = not isinstance(exception, TaskArgumentsError) and (
            not timed_out or task_obj.retry_on_timeout
        )
        if not retryable or retries_done >= task_obj.effective_max_retries:
            _write_outcome(end_op_failure(attempt, exception, status=final_status))
            message.fail()
            return
        self._retry(broker, message, task_obj, attempt, exception, retries_done, timed_out)

    def record_hard_timeout(self, message: MessageProxy, limit: float) -> None:
        """Record a run killed by the hard limit as ``timed_out``; not retried, as it would block again."""
        delivery = self._deliveries.get(id(message))
        if delivery is None or delivery.ctx is None:
            return
        grace = float(jobs_settings.HARD_LIMIT_GRACE)
        exc = TimeoutError(
            f"HardTimeLimit: still running {grace:.0f} s after its {limit:.0f} s execution timeout, blocked in a "
            "call that could not be interrupted; the worker process was restarted"
        )
        _write_outcome(end_op_failure(delivery.ctx.attempt, exc, status=RunStatus.TIMED_OUT))

    def record_thread_death(self, thread_id: int, exc: BaseException) -> None:
        """Record the run a worker thread held when it died as failed (the process is restarted next)."""
        for key, delivery in list(self._deliveries.items()):
            if delivery.thread != thread_id:
                continue
            self._deliveries.pop(key, None)
            attempt = delivery.ctx.attempt if delivery.ctx else delivery.start.outcome
            if isinstance(attempt, Attempt):
                died = RuntimeError(
                    f"WorkerThreadDied: the worker thread running it died ({type(exc).__name__}: {exc}); "
                    "the worker process was restarted"
                )
                _write_outcome(end_op_failure(attempt, died))

    def _retry(
        self,
        broker: Broker,
        message: MessageProxy,
        task_obj: Task,
        attempt: Attempt,
        exception: BaseException,
        retries_done: int,
        timed_out: bool,
    ) -> None:
        """Record the retry as ``retrying`` with its next attempt time and no message: the relay
        publishes it when due. A delay held as a delayed message would sit unacked in a worker's
        prefetch, where RabbitMQ's ``consumer_timeout`` closes the channel and redelivers it."""
        delay = backoff_seconds(task_obj, retries_done)
        op = end_op_retry(attempt, exception, delay, outcome="timed_out" if timed_out else "failed")
        if not _write_outcome(op):
            return  # a newer attempt owns the run (or the database stayed down); nothing to schedule
        logger.info(
            "run %s of %s failed (attempt %s); retry %s due in %.1f s, held in the database for the relay",
            attempt.run_id,
            task_obj.name,
            attempt.attempt,
            retries_done + 1,
            delay,
        )


@dataclass
class Delivery:
    """One delivery of a message to this process: its start, then the run context once started."""

    thread: int
    start: StartOp
    ctx: RunContext | None = None
    token: Any = None
