"""OpenTelemetry: enqueue -> producer span -> traceparent option -> consumer span, inline and across processes."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fusion_jobs
from fusion_jobs import tracing
from fusion_jobs.models import JobRun
from tests.conftest import wait_for


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """A configured SDK for this test only (the global provider is put back afterwards)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return exporter


def by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {span.name: span for span in exporter.get_finished_spans()}


# --- spans in one process (inline runs) ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_without_a_configured_provider_enqueue_makes_no_span_and_no_traceparent():
    assert not tracing.enabled()  # the API is installed, but nothing set a provider
    handle = fusion_jobs.enqueue("t-record", label="untraced")
    assert handle.status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_inline_run_is_a_child_of_the_enqueue_span(spans):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request") as request_span:
        handle = fusion_jobs.enqueue("t-record", label="inline-traced")
    found = by_name(spans)
    producer, consumer = found["publish default"], found["process default"]
    trace_id = request_span.get_span_context().trace_id
    assert {producer.context.trace_id, consumer.context.trace_id} == {trace_id}
    assert producer.parent.span_id == request_span.get_span_context().span_id
    assert consumer.parent.span_id == producer.context.span_id
    assert producer.kind == trace.SpanKind.PRODUCER and consumer.kind == trace.SpanKind.CONSUMER
    assert consumer.attributes["messaging.message.id"] == handle.run_id
    assert consumer.attributes["fusion_jobs.attempt"] == 1
    assert consumer.attributes["fusion_jobs.task"] == "t-record"
    assert producer.attributes["messaging.message.id"] == handle.run_id


@pytest.mark.django_db(transaction=True)
def test_an_inline_failure_is_recorded_on_its_span(spans):
    handle = fusion_jobs.enqueue("t-always-fail", label="inline-error")
    assert handle.status == "failed"
    consumer = by_name(spans)["process default"]
    assert consumer.status.status_code == trace.StatusCode.ERROR
    assert [event.name for event in consumer.events] == ["exception"]


@pytest.mark.django_db(transaction=True)
def test_run_id_is_a_field_of_log_records_inside_a_run(spans, caplog):
    caplog.handler.addFilter(tracing.RunIdFilter())
    with caplog.at_level(logging.INFO):
        handle = fusion_jobs.enqueue("t-always-fail", label="logged")
        logging.getLogger("tests").info("outside any run")
    inside = [r for r in caplog.records if "inline run" in r.getMessage()]
    assert inside and inside[0].run_id == handle.run_id
    assert [r.run_id for r in caplog.records if r.getMessage() == "outside any run"] == [""]


# --- across processes: web request -> enqueue -> worker attempt ----------------------------------


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.broker
@pytest.mark.urls("tests.trace_urls")
@pytest.mark.django_db(transaction=True)
def test_one_trace_spans_the_web_request_the_enqueue_and_the_worker_attempt(
    spans, broker_settings, make_worker, client, tmp_path, settings
):
    settings.FUSION_JOBS_QUEUE_NAMESPACE = "fjtrace"  # no other test's worker takes these messages
    span_file = tmp_path / "worker-spans.jsonl"
    make_worker(
        queues=("default",),
        threads=2,
        env={"FUSION_JOBS_TEST_SPAN_FILE": str(span_file), "FUSION_JOBS_QUEUE_NAMESPACE": "fjtrace"},
    )
    response = client.get("/enqueue/", {"task": "t-record", "label": "traced"})
    assert response.status_code == 200 and response.json()["mode"] == "queued"
    run_id = response.json()["run_id"]
    failing = client.get("/enqueue/", {"task": "t-always-fail", "label": "traced-fail"}).json()["run_id"]

    wait_for(lambda: JobRun.objects.get(pk=run_id).status == "succeeded", what="the traced run")
    wait_for(lambda: JobRun.objects.get(pk=failing).status == "failed", what="the failing traced run")
    worker_spans = wait_for(
        lambda: [s for s in read_spans(span_file) if s["name"] == "process fjtrace.default"] or None,
        what="the worker's spans",
    )

    local = spans.get_finished_spans()
    producers = [s for s in local if s.name == "publish fjtrace.default"]
    producer = next(s for s in producers if s.attributes["messaging.message.id"] == run_id)
    request_span = next(
        s for s in local if s.name == "GET /enqueue/" and s.context.span_id == producer.parent.span_id
    )
    consumer = next(s for s in worker_spans if s["attributes"]["messaging.message.id"] == run_id)

    trace_id = f"{request_span.context.trace_id:032x}"
    assert f"{producer.context.trace_id:032x}" == trace_id
    assert consumer["trace_id"] == trace_id  # the same trace, continued in another process
    assert consumer["parent_id"] == f"{producer.context.span_id:016x}"
    assert consumer["kind"] == "CONSUMER" and consumer["status"] != "ERROR"
    assert consumer["attributes"]["messaging.system"] == "rabbitmq"
    assert consumer["attributes"]["messaging.destination.name"] == "fjtrace.default"
    assert consumer["attributes"]["fusion_jobs.attempt"] == 1
    assert consumer["pid"] != os.getpid()

    # Every attempt of the failing run is a consumer span; the first continues the request's trace,
    # and each records its error.
    attempts = wait_for(
        lambda: (
            [
                s
                for s in read_spans(span_file)
                if s["name"] == "process fjtrace.default"
                and s["attributes"]["messaging.message.id"] == failing
            ]
            or None
        ),
        what="the failing run's attempt spans",
    )
    assert all(s["status"] == "ERROR" and "exception" in s["events"] for s in attempts)
    first = min(attempts, key=lambda s: s["attributes"]["fusion_jobs.attempt"])
    failing_request = next(
        s
        for s in local
        if s.name == "publish fjtrace.default" and s.attributes["messaging.message.id"] == failing
    )
    assert first["trace_id"] == f"{failing_request.context.trace_id:032x}"
