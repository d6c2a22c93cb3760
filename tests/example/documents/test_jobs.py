"""The enqueue seam ``kick_processing``: inline without a broker, every publish-failure policy, a real worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from example.documents import retrieval
from example.documents.jobs import INLINE, QUEUED, kick_processing
from example.documents.models import Document
from fusion_jobs.backends.broker import reset_broker
from fusion_jobs.models import JobRun
from tests.conftest import wait_for

MakeDocument = Callable[..., Document]
DOWN_URL = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1: the broker is "down"


@pytest.fixture
def broker_down(settings: Any) -> Iterator[None]:
    settings.FUSION_JOBS_BROKER_URL = DOWN_URL
    reset_broker()
    yield
    reset_broker()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("media", "hashing")
def test_without_a_broker_it_is_processed_inline_as_a_recorded_run(
    make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf)

    assert kick_processing(document.pk) == INLINE == "processed inline"

    document.refresh_from_db()
    run = JobRun.objects.get(pk=document.last_run_id)
    assert document.status == "ready"
    assert (run.task_name, run.mode, run.status, run.kwargs) == (
        "process-chat-document",
        "inline",
        "succeeded",
        {"document_id": document.pk},
    )
    assert run.result["status"] == "ready" and run.result["chunks"] == document.chunk_count


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("media", "hashing", "broker_down")
def test_a_failed_publish_falls_back_inline_with_the_default_policy(
    make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf)

    assert kick_processing(document.pk) == INLINE

    document.refresh_from_db()
    run = JobRun.objects.get(pk=document.last_run_id)
    assert document.status == "ready"
    assert (run.mode, run.status) == ("inline", "succeeded")  # the plugin ran it here, recorded


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("media", "hashing", "broker_down")
def test_a_failed_publish_with_the_raise_policy_is_still_processed_inline(
    make_document: MakeDocument, text_pdf: bytes, settings: Any
) -> None:
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "raise"
    document = make_document(text_pdf)

    assert kick_processing(document.pk) == INLINE

    document.refresh_from_db()
    assert document.status == "ready" and document.chunk_count
    run = JobRun.objects.get(kwargs__document_id=document.pk)
    assert run.status == "failed" and run.error.startswith("PublishError")  # the admin shows the outage
    assert "guest:guest" not in run.error


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("media", "hashing", "broker_down")
def test_with_the_outbox_policy_it_stays_queued_for_the_relay(
    make_document: MakeDocument, text_pdf: bytes, settings: Any
) -> None:
    settings.FUSION_JOBS_ON_PUBLISH_ERROR = "outbox"
    document = make_document(text_pdf)

    assert kick_processing(document.pk) == QUEUED

    document.refresh_from_db()
    run = JobRun.objects.get(pk=document.last_run_id)
    assert document.status == "pending"  # a relay publishes it once the broker is back
    assert (run.mode, run.status, run.published_at) == ("worker", "queued", None)


@pytest.mark.django_db
@pytest.mark.usefixtures("media", "hashing")
def test_inside_a_transaction_nothing_runs_until_it_commits(
    make_document: MakeDocument, text_pdf: bytes, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    document = make_document(text_pdf)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert kick_processing(document.pk) == INLINE
        document.refresh_from_db()
        assert document.status == "pending"
    assert len(callbacks) == 1

    callbacks[0]()
    document.refresh_from_db()
    assert document.status == "ready"


# --- The real broker and a real `manage.py rundramatiq` ------------------------------------------------


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hashing")
def test_an_upload_is_queued_to_a_real_worker_and_becomes_searchable(
    broker_settings: str, worker: Any, client: Client, text_pdf: bytes, marker: tuple[int, str]
) -> None:
    page, phrase = marker
    client.force_login(get_user_model().objects.create_user("uploader", password="pw-for-tests"))

    response = client.post(
        reverse("documents:list"),
        {"file": SimpleUploadedFile("worker.pdf", text_pdf, content_type="application/pdf")},
        follow=True,
    )

    assert "“worker” uploaded: queued to a worker." in response.content.decode()
    document = wait_for(
        lambda: Document.objects.filter(status__in=["ready", "failed"]).first(),
        timeout=60,
        what="the worker to process the document",
    )
    assert (document.status, document.error, document.page_count) == ("ready", "", 12)
    # The worker records the run's end just after the task returns, so that can trail the document.
    run = wait_for(
        lambda: JobRun.objects.filter(pk=document.last_run_id, status="succeeded").first(),
        what="the run to be recorded as succeeded",
    )
    assert (run.mode, run.attempts) == ("worker", 1)
    assert run.worker and not run.worker.endswith(f":{os.getpid()}")  # it ran in the worker process
    assert run.result["status"] == "ready" and run.result["chunks"] == document.chunk_count
    assert (run.progress_stage, run.progress_done) == ("store", document.chunk_count)

    best = retrieval.search_chunks(phrase).hits[0]  # chunks written by the worker, found here
    assert best.document == document and best.chunk.page_label == f"p. {page}"


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hashing")
def test_a_bad_document_fails_on_the_worker_without_failing_the_run(
    broker_settings: str, worker: Any, make_document: MakeDocument, pdf_factory: Callable[..., bytes]
) -> None:
    document = make_document(pdf_factory(["secret"], user_password="pw"), "locked.pdf")

    assert kick_processing(document.pk) == QUEUED

    run = wait_for(
        lambda: JobRun.objects.filter(kwargs__document_id=document.pk, status="succeeded").first(),
        timeout=60,
        what="the worker to finish the run",
    )
    document.refresh_from_db()
    assert str(document.last_run_id) == str(run.pk)
    assert (document.status, document.error) == (
        "failed",
        "encrypted PDF: remove the password and upload it again",
    )
    assert run.result["error_class"] == "EncryptedPdf"
    assert run.attempts == 1  # not retried: the file would fail the same way
