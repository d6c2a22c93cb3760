"""The outbox: publish runs' messages, mark them published, and apply the publish-error policy.

Every run is written before its message is sent, so a message that does not reach the broker
leaves a row the relay can publish later. This module is the one place that publishes a run:
``enqueue()``, ``enqueue_many()``, cron firing and the relay all go through
:func:`publish_and_mark`. (A worker's retry publishes nothing: it is held as ``next_attempt_at``
and published by the relay.)

What a failed publish does is the policy (``FUSION_JOBS_ON_PUBLISH_ERROR``, or the task's
``on_publish_error``): ``outbox`` keeps the run for the relay, ``raise`` fails it, ``inline``
runs it here. Batches, cron ticks and the relay always keep their runs (:data:`KEEP`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from .backends import get_backend
from .backends.base import BaseBackend, Outgoing
from .backends.inline import InlineOutcome, run_inline
from .conf import PUBLISH_ERROR_POLICIES, jobs_settings
from .exceptions import PublishError
from .marking import mark_later
from .models import JobRun, RunMode, RunStatus
from .recording import db_alias, mark_published
from .registry import Task

logger = logging.getLogger("fusion_jobs")

#: The ``ON_PUBLISH_ERROR`` policies, by name.
INLINE, RAISE, OUTBOX = PUBLISH_ERROR_POLICIES
#: Leave unpublished runs as they are for the relay (batches, cron ticks, the relay itself).
KEEP = "keep"

Mark = Callable[[Sequence[Outgoing]], None]


def policy_for(task: Task) -> str:
    """What a failed publish of ``task``'s runs does: the task's own policy, else the setting."""
    return task.on_publish_error or str(jobs_settings.ON_PUBLISH_ERROR)


@dataclass
class Unpublished:
    """Messages the broker did not take, and what their policy made of the run.

    ``outcome``: under ``raise`` the run's failure, under ``inline`` its inline run (``inline``
    True); None when the runs were kept for the relay.
    """

    error: PublishError
    outcome: InlineOutcome | None = None
    inline: bool = False


def mark_runs(messages: Sequence[Outgoing]) -> None:
    """Note that the runs' messages are on the broker, so the relay leaves them alone.

    Each mark is a commit that need not wait for the disk, and a database error is logged, not
    raised (``recording.mark_published``): the messages are sent, and the workers mark the runs
    when they start them.
    """
    for message in messages:
        mark_published(message.run_id)


def mark_runs_later(messages: Sequence[Outgoing]) -> None:
    """:func:`mark_runs` by this process's marking thread, moments later (``fusion_jobs.marking``).

    For ``enqueue()``: no statement on the caller's path. The relay only takes runs older than
    its minimum age, and the workers mark the runs when they start them.
    """
    mark_later([m.run_id for m in messages])


def hand_off(messages: Sequence[Outgoing], backend: BaseBackend) -> Unpublished | None:
    """Send runs whose rows are committed to disk without waiting for the broker (``enqueue_many``).

    The backend streams the messages on a confirm channel and each run is marked published when
    its confirm comes; a message never confirmed (a nack, a lost connection, a process that
    died) leaves its run for the relay. ``PublishError`` (no connection): all kept for the relay.
    """
    return publish_and_mark(
        messages, publish=lambda part: backend.hand_off(part, mark_later), mark=_marked_when_confirmed
    )


def _marked_when_confirmed(messages: Sequence[Outgoing]) -> None:
    """Nothing to do after a hand-off: the confirms mark the runs as they come."""


def publish_and_mark(
    messages: Sequence[Outgoing],
    *,
    policy: str = KEEP,
    may_raise: bool = True,
    publish: Callable[[Sequence[Outgoing]], None] | None = None,
    mark: Mark = mark_runs,
) -> Unpublished | None:
    """Publish ``messages`` (one confirmed publish) and ``mark`` them published once the broker has them.

    On ``PublishError`` the policy is applied and returned as :class:`Unpublished`. ``may_raise``
    False (a hook after the caller's commit, which must not skip the other hooks): the error of
    ``raise``, or the task's under ``inline`` with ``INLINE_RAISE``, is logged, not raised.
    ``publish``: what sends them, the chosen backend's ``publish`` by default.
    """
    try:
        (publish or get_backend().publish)(messages)
    except PublishError as exc:
        return _fall_back(messages, exc, policy, may_raise)
    mark(messages)
    return None


def _fall_back(messages: Sequence[Outgoing], exc: PublishError, policy: str, may_raise: bool) -> Unpublished:
    if policy in (KEEP, OUTBOX) or len(messages) != 1:
        if policy == OUTBOX:
            # The row was written without waiting for the disk (the broker's confirm was to make
            # it durable); this synchronous commit flushes it, so the relay can count on it.
            _waiting(messages).update(published_at=None)
        logger.warning("%s; %d run(s) kept in the outbox for the relay", exc, len(messages))
        return Unpublished(exc)
    if policy == RAISE:
        outcome = InlineOutcome(RunStatus.FAILED, error=f"PublishError: {exc}"[:2000])
        _waiting(messages).update(status=RunStatus.FAILED, error=outcome.error, finished_at=timezone.now())
        if may_raise:
            raise exc
        logger.error(
            "%s; the run is marked failed (FUSION_JOBS_ON_PUBLISH_ERROR=raise), not raised: "
            "the publish ran after the transaction committed",
            exc,
        )
        return Unpublished(exc, outcome)
    logger.warning("%s; running it inline instead (FUSION_JOBS_ON_PUBLISH_ERROR=inline)", exc)
    _waiting(messages).update(mode=RunMode.INLINE, max_retries=0)
    [message] = messages
    outcome = run_inline(message.task, message.run_id, message.kwargs)
    if may_raise and jobs_settings.INLINE_RAISE and outcome.exception is not None:
        raise outcome.exception
    return Unpublished(exc, outcome, inline=True)


def _waiting(messages: Sequence[Outgoing]) -> Any:
    """The runs, while still queued: a run a worker already took (a duplicate publish) is left alone."""
    return JobRun.objects.using(db_alias()).filter(
        pk__in=[m.run_id for m in messages], status=RunStatus.QUEUED
    )


__all__ = [
    "INLINE",
    "KEEP",
    "OUTBOX",
    "RAISE",
    "Outgoing",
    "Unpublished",
    "hand_off",
    "mark_runs",
    "mark_runs_later",
    "policy_for",
    "publish_and_mark",
]
