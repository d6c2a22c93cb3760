"""A document held by a process that died (OOM-killed web process running it inline, a lost worker) is
mended by the stuck-run sweep instead of saying "processing" forever."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import fusion_jobs
from example.documents.models import Document
from example.documents.recovery import INTERRUPTED, recover_stuck_documents
from fusion_jobs.models import JobRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def held_by_a_dead_process(make_document: Callable[..., Document], data: bytes, *, mode: str) -> Document:
    """What a killed process leaves: the document processing, its run running, silent for an hour."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    run = JobRun.objects.create(
        task_name="process-chat-document",
        status="running",
        mode=mode,
        attempts=1,
        execution_timeout=600,
        started_at=an_hour_ago,
        heartbeat_at=an_hour_ago,
    )
    document = make_document(data)
    Document.objects.filter(pk=document.pk).update(status="processing", last_run_id=run.pk)
    return document


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_the_sweep_fails_a_document_whose_process_died(
    make_document: Callable[..., Document],
    text_pdf: bytes,
    mode: str,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    document = held_by_a_dead_process(make_document, text_pdf, mode=mode)

    with django_capture_on_commit_callbacks(execute=True):
        fusion_jobs.enqueue("fusion-jobs-sweep-stuck")  # the maintenance cron's task (inline here)

    document.refresh_from_db()
    assert JobRun.objects.get(pk=document.last_run_id).status == "failed"
    assert (document.status, document.error) == ("failed", INTERRUPTED)


def test_a_document_with_a_live_run_is_left_alone(
    make_document: Callable[..., Document], text_pdf: bytes
) -> None:
    document = make_document(text_pdf)
    run = JobRun.objects.create(
        task_name="process-chat-document", status="running", mode="worker", started_at=timezone.now()
    )
    Document.objects.filter(pk=document.pk).update(status="processing", last_run_id=run.pk)

    assert recover_stuck_documents() == 0
    document.refresh_from_db()
    assert document.status == "processing"


def test_an_untracked_document_is_mended_only_after_the_budget_and_grace(
    make_document: Callable[..., Document], text_pdf: bytes, settings: Any
) -> None:
    """Processed outside a recorded run (the publish fallback): no run to watch, so its silence counts."""
    settings.DOCUMENTS_EMBED_BUDGET_SECONDS = 540
    document = make_document(text_pdf)
    Document.objects.filter(pk=document.pk).update(status="processing")

    assert recover_stuck_documents() == 0
    assert recover_stuck_documents(now=timezone.now() + timedelta(minutes=20)) == 1
    document.refresh_from_db()
    assert document.status == "failed"


@pytest.mark.usefixtures("hashing")
def test_with_jobs_inline_reprocess_recovers_a_document_whose_web_process_died(
    make_document: Callable[..., Document],
    text_pdf: bytes,
    django_user_model: Any,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """Inline (the example's default) ``runcrons`` fires nothing, so no sweep ever comes: Reprocess,
    which refuses while the run is ``running``, must not refuse such a document forever."""
    from django.test import Client

    assert not fusion_jobs.is_jobs_enabled()
    document = held_by_a_dead_process(make_document, text_pdf, mode="inline")
    document.refresh_from_db()
    dead_run = document.last_run_id
    assert dead_run is not None
    owner = django_user_model.objects.create_user("ada")
    Document.objects.filter(pk=document.pk).update(owner=owner)
    client = Client()
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/documents/{document.pk}/reprocess/")

    document.refresh_from_db()
    assert JobRun.objects.get(pk=dead_run).status == "failed"
    assert document.last_run_id != dead_run and document.status == "ready", document.error


def test_reprocess_leaves_a_live_inline_run_alone(
    make_document: Callable[..., Document], text_pdf: bytes, django_user_model: Any
) -> None:
    from django.test import Client

    document = make_document(text_pdf)
    run = JobRun.objects.create(
        task_name="process-chat-document", status="running", mode="inline", started_at=timezone.now()
    )
    owner = django_user_model.objects.create_user("ada")
    Document.objects.filter(pk=document.pk).update(status="processing", last_run_id=run.pk, owner=owner)
    client = Client()
    client.force_login(owner)

    client.post(f"/documents/{document.pk}/reprocess/")

    document.refresh_from_db()
    assert (document.status, document.last_run_id) == ("processing", run.pk)
    assert JobRun.objects.get(pk=run.pk).status == "running"
