"""Single-flight tasks and stale cron ticks on the worker (the logic is in ``fusion_jobs.admission``).

It sits before ``RunLifecycle``: a run kept from starting is recorded ``skipped`` and the message
is skipped (acked) before anything marks it ``running``. The lock taken here is released in
``after_process_message``, which Dramatiq calls after ``RunLifecycle`` has written the outcome
(``after_*`` hooks run in reverse order), so the next run can only start once this one is
recorded as over.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import DatabaseError, InterfaceError
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage

from ..admission import Admission, admit
from ..exceptions import UnknownTaskError
from ..registry import get_task
from .db import requeue_for_db_outage

logger = logging.getLogger("fusion_jobs.worker")


class SingleFlight(Middleware):
    def __init__(self) -> None:
        # Keyed by the delivery (the proxy object), not the message id: a duplicate delivery of a
        # running message that is skipped must not release the lock of the one that runs.
        self._held: dict[int, Admission] = {}
        self._lock = threading.Lock()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            task_obj = get_task(message.actor_name)
        except UnknownTaskError:
            return  # RunLifecycle deals with it
        try:
            admission = admit(task_obj, message.message_id, dict(message.kwargs))
        except (DatabaseError, InterfaceError) as exc:
            # Running without the check could break single-flight.
            requeue_for_db_outage(broker, message, exc, "checking")
        if admission.skip_reason:
            logger.info("skipping %s run %s: %s", task_obj.name, message.message_id, admission.skip_reason)
            raise SkipMessage(admission.skip_reason)
        if admission.holds_lock:
            with self._lock:
                self._held[id(message)] = admission

    def _release(self, message: MessageProxy) -> None:
        with self._lock:
            admission = self._held.pop(id(message), None)
        if admission is not None:
            admission.release()

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._release(message)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._release(message)
