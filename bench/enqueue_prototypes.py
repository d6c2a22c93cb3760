"""The enqueue ways of ``bench/enqueue_paths.py`` that are not this tree's ``enqueue()``.

Prototypes built from the tree's public pieces (``handoff``, ``async_confirmed``, ``sync_handoff``,
``row_only``); ``enqueue_paths`` imports them only in a child that runs this tree, since the
"today" ways run in a checkout of the code before, which has no such module.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


class Prototypes:
    """The alternatives that are not this tree's ``enqueue()``: built from its public pieces."""

    def __init__(self, broker_url: str, queue: str) -> None:
        from bench.app.tasks import noop
        from fusion_jobs import enqueue
        from fusion_jobs.backends.broker import get_broker

        self.broker_url = broker_url
        self.queue = queue
        self.task = noop
        self.broker = get_broker()
        enqueue(noop, p="w")  # declares the queue

    def row(self, durable: bool) -> str:
        import uuid

        from fusion_jobs.models import JobRun, RunMode
        from fusion_jobs.recording import db_alias, insert_run

        task = self.task
        run_id = str(uuid.uuid4())
        insert_run(
            JobRun(
                id=run_id,
                task_name=task.name,
                queue=task.effective_queue,
                mode=RunMode.WORKER,
                kwargs={"p": "e"},
                max_retries=task.effective_max_retries,
                execution_timeout=task.effective_timeout,
                enqueued_by="bench",
            ),
            using=db_alias(),
            durable=durable,
        )
        return run_id

    def body(self, run_id: str) -> bytes:
        import dramatiq

        return dramatiq.Message(
            queue_name=self.queue,
            actor_name=self.task.name,
            args=(),
            kwargs={"p": "e"},
            options={},
            message_id=run_id,
            message_timestamp=int(time.time() * 1000),
        ).encode()


def mark_many(run_ids: list[str]) -> None:
    from django.db import close_old_connections
    from django.utils import timezone

    from fusion_jobs.models import JobRun

    JobRun.objects.filter(pk__in=run_ids, published_at__isnull=True).update(published_at=timezone.now())
    close_old_connections()


def handoff_way(protos: Prototypes) -> tuple[Callable[[], Any], Callable[[], None]]:
    """(c): the INSERT, then a thread that publishes what gathered with confirms, and marks it."""
    import pika

    todo: queue.Queue[str | None] = queue.Queue()
    idle = threading.Event()

    def publisher() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(protos.broker_url))
        channel = connection.channel()
        channel.confirm_delivery()
        while True:
            first = todo.get()
            if first is None:
                break
            ids = [first]
            while not todo.empty():
                item = todo.get_nowait()
                if item is None:
                    break
                ids.append(item)
            for run_id in ids:
                channel.basic_publish(
                    "",
                    protos.queue,
                    protos.body(run_id),
                    pika.BasicProperties(delivery_mode=2),
                    mandatory=True,
                )
            mark_many(ids)
            if todo.empty():
                idle.set()
        connection.close()

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()

    def call() -> None:
        idle.clear()
        todo.put(protos.row(True))

    def finish() -> None:
        idle.wait(30)
        todo.put(None)
        thread.join(30)

    return call, finish


def async_confirmed_way(protos: Prototypes) -> tuple[Callable[[], Any], Callable[[], None]]:
    """Today's durability, lean: async INSERT, a confirmed publish on a bare channel, marks batched."""
    import pika

    from fusion_jobs.marking import Marker

    connection = pika.BlockingConnection(pika.URLParameters(protos.broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    marker = Marker(mark_many, 0.2)

    def call() -> None:
        run_id = protos.row(False)
        channel.basic_publish(
            "", protos.queue, protos.body(run_id), pika.BasicProperties(delivery_mode=2), mandatory=True
        )
        marker.add([run_id])

    def finish() -> None:
        marker.flush(30)
        marker.close(5)
        connection.close()

    return call, finish


def proto_way(protos: Prototypes) -> tuple[Callable[[], Any], Callable[[], None]]:
    """(b) before it is ``enqueue()``: the INSERT waiting for the disk, the publish not waiting."""
    import pika

    from fusion_jobs.backends.confirms import ConfirmingPublisher, Envelope
    from fusion_jobs.marking import mark_later

    publisher = ConfirmingPublisher(pika.URLParameters(protos.broker_url), mark_later, connect_timeout=2.0)

    def call() -> None:
        run_id = protos.row(True)
        publisher.publish([Envelope(run_id, protos.queue, protos.body(run_id))])

    def finish() -> None:
        publisher.close(30)

    return call, finish
