"""Feeds the worker process's :class:`~fusion_jobs.workers.Heartbeat`: runs in progress and counts.

Memory only: the heartbeat thread writes them with its next beat, never one write per run.
"""

from __future__ import annotations

from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy

from ..workers import Heartbeat


class HeartbeatCounters(Middleware):
    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        self.heartbeat.run_started(message.message_id, message.actor_name, delivery=id(message))

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.heartbeat.run_ended(message.message_id, failed=exception is not None, delivery=id(message))

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self.heartbeat.run_ended(message.message_id, failed=None, delivery=id(message))
