"""The worker's gate: what a message must get past before anything runs it.

The encoder (``fusion_jobs.encoder``) checks a message's content as it is decoded. Two checks need
more than the bytes, and live here:

- ``QueueCheckedConsumer``: a message must claim the queue it was delivered on. Dramatiq hands a
  message back to the consumer named by its ``queue_name`` to be acked; a message claiming
  another queue would be acked on the wrong channel (or kill the worker thread when this process
  has no consumer by that name).
- ``before_process_fail_closed``: Dramatiq logs an exception raised by a middleware's
  ``before_process_message`` hook and runs the task anyway. Here such an exception refuses the
  message instead: it is dead-lettered with a failed run saying why, so no task ever runs without
  its run having been recorded as started (and its single-flight and limits in place).
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq import Broker, Consumer, MessageProxy
from dramatiq.errors import DecodeError
from dramatiq.middleware import MiddlewareError, SkipMessage

from ..encoder import MessageRejected, record_malformed

logger = logging.getLogger("fusion_jobs.worker")


class QueueCheckedConsumer(Consumer):
    """A consumer that dead-letters a message whose ``queue_name`` is not the queue it came from."""

    def __init__(self, consumer: Consumer, queue_name: str) -> None:
        self.consumer = consumer
        self.queue_name = queue_name

    def __next__(self) -> MessageProxy | None:
        message: MessageProxy | None = next(self.consumer)
        if message is None or message.queue_name == self.queue_name:
            return message
        reason = (
            f"queue_name {message.queue_name!r} is not the queue it was delivered on ({self.queue_name!r})"
        )
        logger.error("rejecting a message to the dead-letter queue: %s", reason)
        record_malformed(reason, message.encode(), dict(message.asdict()))
        self.consumer.nack(message)
        return None

    def ack(self, message: MessageProxy) -> None:
        self.consumer.ack(message)

    def nack(self, message: MessageProxy) -> None:
        self.consumer.nack(message)

    def requeue(self, messages: Any) -> None:
        self.consumer.requeue(messages)

    def close(self) -> None:
        self.consumer.close()


def before_process_fail_closed(broker: Broker, message: MessageProxy) -> None:
    """Run every middleware's ``before_process_message``; any exception refuses the message.

    ``SkipMessage`` (and Dramatiq's other ``MiddlewareError``) keep their meaning. Anything else
    marks the message failed, so Dramatiq neither runs the task nor acks it (it goes to the
    dead-letter queue), records a failed run, and skips it.
    """
    for middleware in broker.middleware:
        try:
            middleware.before_process_message(broker, message)
        except MiddlewareError:
            raise
        except Exception as exc:
            reason = f"{type(middleware).__name__} could not admit it ({type(exc).__name__}: {exc})"
            logger.error("refusing run %s, dead-lettering it: %s", message.message_id, reason, exc_info=True)
            message.fail()
            record_malformed(reason[:1000], message.encode(), dict(message.asdict()))
            raise SkipMessage(reason) from None


class _DropRepeatedLines(logging.Filter):
    """Drops Dramatiq's own line for what fusion-jobs has already logged with its reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Message %s was skipped.":
            return False  # every skip is logged by fusion-jobs, with why
        if isinstance(record.msg, str) and record.msg.startswith("Failed to decode message"):
            # A rejection by the encoder is logged there in one line; keep other decode failures.
            exc = record.exc_info[1] if record.exc_info else None
            while isinstance(exc, DecodeError):  # Dramatiq wraps the encoder's DecodeError in its own
                if isinstance(exc.error, MessageRejected):
                    return False
                exc = exc.error
        return True


_FILTER = _DropRepeatedLines()


def quiet_repeated_lines() -> None:
    """One line per skipped or rejected message (Dramatiq would add a warning or a traceback)."""
    for name in ("dramatiq.worker.WorkerThread", "dramatiq.brokers.rabbitmq._RabbitmqConsumer"):
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
