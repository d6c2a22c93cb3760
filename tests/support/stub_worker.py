"""fusion-jobs' worker stack on Dramatiq's StubBroker, run by a ``dramatiq.Worker`` in the test's process.

For tests of what happens to a run on a worker that need neither RabbitMQ nor a worker
subprocess (tests/integration/middleware/test_stack_on_stub_broker.py). Tests using it need
``transactional_db``: the batch writer commits on its own connection. Dramatiq's TimeLimit and
fusion-jobs' HardTimeLimit start a timer thread per broker; with ``FUSION_JOBS_HARD_LIMIT_GRACE``
left at its default a task blocked past it would end the test process, as it ends a worker's.
"""

from __future__ import annotations

import threading
import time
import uuid
from types import TracebackType
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from fusion_jobs.backends.broker import declare_actor
from fusion_jobs.encoder import StrictJSONEncoder
from fusion_jobs.middleware import build_stack
from fusion_jobs.registry import get_task


class StubWorker:
    """``with StubWorker(["t-record"]) as worker: run_id = worker.send("t-record", label="x")``."""

    def __init__(self, task_names: list[str] | tuple[str, ...], *, threads: int = 2) -> None:
        self.broker = StubBroker(middleware=build_stack())
        self.broker.fail_fast_default = False  # failed runs are dead-lettered; tests read their rows
        for name in task_names:
            declare_actor(get_task(name), self.broker)
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=50)
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> StubWorker:
        self._saved = (dramatiq.get_encoder(), threading.excepthook)
        dramatiq.set_encoder(StrictJSONEncoder())  # the worker's checks on every message
        self.broker.emit_after("process_boot")  # as a worker process does: TimeLimit starts its timer
        self.worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.worker.stop()
        self.broker.close()
        if self._saved is not None:
            encoder, excepthook = self._saved
            dramatiq.set_encoder(encoder)
            threading.excepthook = excepthook  # HardTimeLimit hooks thread deaths at worker boot

    @property
    def dead_letters(self) -> list[Any]:
        return list(self.broker.dead_letters)

    def send(self, task_name: str, run_id: str | None = None, **kwargs: Any) -> str:
        """Publish a message as fusion-jobs does, then wait until the worker is done with it."""
        task_obj = get_task(task_name)
        run_id = run_id or str(uuid.uuid4())
        self.broker.enqueue(
            dramatiq.Message(
                queue_name=task_obj.effective_queue,
                actor_name=task_obj.name,
                args=(),
                kwargs=kwargs,
                options={},
                message_id=run_id,
                message_timestamp=int(time.time() * 1000),
            )
        )
        self.broker.join(task_obj.effective_queue, timeout=20_000)
        return run_id
