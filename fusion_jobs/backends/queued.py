"""What the broker backend and the test stub share: new runs are queued, and published through the outbox."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ..handle import RunHandle
from ..models import HANDLE_INLINE, HANDLE_QUEUED, JobRun
from ..outbox import hand_off, mark_runs_later, policy_for, publish_and_mark
from ..recording import db_alias, insert_run
from ..registry import Task
from .base import BaseBackend, NewRun, Outgoing, after_commit, write_runs


class QueuingBackend(BaseBackend):
    """New runs go to workers: the row is written queued, its message published after the commit."""

    queues_runs = True

    def enqueue(self, run: NewRun) -> RunHandle:
        """``enqueue_at()`` with a start ahead: the row is all there is until the relay publishes it
        at ``next_attempt_at``, so it is written durably (no broker confirm stands behind it)."""
        deferred = run.not_before is not None and run.not_before > timezone.now()
        row = JobRun.new_run(
            run.task,
            run.kwargs,
            id=run.run_id,
            enqueued_by=run.enqueued_by,
            retry_of=run.retry_of,
            next_attempt_at=run.not_before if deferred else None,  # a start already past: at once
        )
        alias = db_alias()
        insert_run(row, using=alias, durable=deferred)
        handle = RunHandle(run_id=run.run_id, mode=HANDLE_QUEUED, task_name=run.task.name)
        if not deferred:
            after_commit(alias, lambda may_raise: self._publish(run, handle, may_raise))
        return handle

    def _publish(self, run: NewRun, handle: RunHandle, may_raise: bool) -> None:
        message = Outgoing(run.task, run.run_id, run.kwargs, run.traceparent)
        policy = run.policy or policy_for(run.task)
        unpublished = publish_and_mark(
            [message], policy=policy, may_raise=may_raise, publish=self.publish, mark=mark_runs_later
        )
        if unpublished is not None and unpublished.outcome is not None:
            outcome = unpublished.outcome
            handle.status, handle.result, handle.error = outcome.status, outcome.result, outcome.error
            if unpublished.inline:
                handle.mode = HANDLE_INLINE

    def enqueue_many(self, task: Task, payloads: list[dict[str, Any]], enqueued_by: str) -> list[RunHandle]:
        alias, handles = write_runs(task, payloads, enqueued_by, queued=True)
        messages = [Outgoing(task, h.run_id, p) for h, p in zip(handles, payloads, strict=True)]
        # Committed to disk with the rows, so the messages need not wait for their confirms; a
        # batch is never run inline: what does not reach the broker stays for the relay.
        after_commit(alias, lambda _may_raise: hand_off(messages, self))
        return handles
