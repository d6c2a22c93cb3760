"""OpenTelemetry tracing of runs (optional: ``opentelemetry-api``), and run ids in log records.

When a tracer provider is configured (``trace.set_tracer_provider``, or ``opentelemetry-instrument``),
``enqueue()`` opens a producer span and puts the W3C ``traceparent`` of that span in the message's
options; the worker continues the trace with a consumer span per attempt, and inline runs get
the same span in the calling process. Attributes follow the OpenTelemetry messaging semantic
conventions (``messaging.system``, ``messaging.destination.name``, ``messaging.message.id`` = the
run id, ``messaging.operation.*``) plus ``fusion_jobs.task`` and ``fusion_jobs.attempt``.

Without the package, or with no provider configured, every entry point returns after one check
and no span object is made. A ``traceparent`` read from a message is parsed by ``parse_traceparent``
only (the encoder refuses any other shape), so a hostile message can carry nothing else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError:  # the ``otel`` extra is not installed
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

from .context import current_run_id

#: Version 00 of W3C Trace Context: ``00-<trace id>-<parent id>-<flags>``, lower-case hex, 55 chars.
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
TRACEPARENT_LENGTH = 55
TRACER_NAME = "fusion_jobs"


def traceparent_problem(value: object) -> str | None:
    """Why ``value`` is not a version-00 W3C ``traceparent``; None when it is one."""
    if not isinstance(value, str):
        return f"must be str, not {type(value).__name__}"
    if len(value) != TRACEPARENT_LENGTH:
        return f"must be {TRACEPARENT_LENGTH} characters, not {len(value)}"
    found = TRACEPARENT.match(value)
    if not found:
        return "is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)"
    if int(found.group(1), 16) == 0 or int(found.group(2), 16) == 0:
        return "has an all-zero trace id or parent id"
    return None


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` of a valid ``traceparent``, None for anything else."""
    if traceparent_problem(value) is not None:
        return None
    assert isinstance(value, str)
    return int(value[3:35], 16), int(value[36:52], 16), int(value[53:55], 16)


def enabled() -> bool:
    """True when the OpenTelemetry API is installed and a real tracer provider is set."""
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _traceparent_of(span: Any) -> str | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _attributes(operation: str, task: str, queue: str, run_id: str, system: str) -> dict[str, Any]:
    return {
        "messaging.system": system,
        "messaging.destination.name": queue,
        "messaging.operation.type": "send" if operation == "publish" else "process",
        "messaging.operation.name": operation,
        "messaging.message.id": run_id,
        "fusion_jobs.task": task,
    }


@contextmanager
def producer_span(task: str, queue: str, run_id: str, *, queued: bool) -> Iterator[str | None]:
    """A producer span around an enqueue; yields the ``traceparent`` to publish (None when off).

    ``queued`` False (an inline run) still opens the span, so the inline attempt is its child.
    An exception leaving the block is recorded on the span.
    """
    if not enabled():
        yield None
        return
    tracer = trace.get_tracer(TRACER_NAME)
    attributes = _attributes("publish", task, queue, run_id, "rabbitmq" if queued else "fusion_jobs")
    with tracer.start_as_current_span(
        f"publish {queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield _traceparent_of(span)


class ConsumerSpan:
    """One attempt's consumer span, current in this thread until ``end()``."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token

    def end(self, exception: BaseException | None = None) -> None:
        if exception is not None:
            self.span.record_exception(exception)
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exception).__name__}"))
        self.span.end()
        otel_context.detach(self.token)


def start_consumer(
    task: str,
    queue: str,
    run_id: str,
    attempt: int,
    *,
    traceparent: object = None,
    system: str = "rabbitmq",
) -> ConsumerSpan | None:
    """Start the consumer span of an attempt, child of ``traceparent`` (else of the current span)."""
    if not enabled():
        return None
    parent = None
    ids = parse_traceparent(traceparent) if traceparent is not None else None
    if ids is not None:
        remote = trace.SpanContext(ids[0], ids[1], is_remote=True, trace_flags=trace.TraceFlags(ids[2]))
        parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    attributes = _attributes("process", task, queue, run_id, system)
    attributes["fusion_jobs.attempt"] = attempt
    span = trace.get_tracer(TRACER_NAME).start_span(
        f"process {queue}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    )
    return ConsumerSpan(span, otel_context.attach(trace.set_span_in_context(span)))


class RunIdFilter(logging.Filter):
    """Adds ``run_id`` (the run this thread executes, or "") to every record it sees.

    Install it on a handler (``rundramatiq``'s own handler has it) and use ``%(run_id)s`` in a
    format or a structured formatter's fields.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = current_run_id() or ""
        return True
