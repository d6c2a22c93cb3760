"""The process-chat-document job body: outcomes recorded on the Document, never raised."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage

import fusion_jobs
from example.documents import processing, retrieval
from example.documents.chunking import chunk_pages, window_for
from example.documents.embedders import HashingEmbedder
from example.documents.extract import extract
from example.documents.models import Chunk, Document
from example.documents.processing import process_document
from example.documents.tasks import TASK_NAME
from fusion_jobs.models import JobRun
from fusion_jobs.registry import get_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media", "hashing")]

MakeDocument = Callable[..., Document]


class Crash(BaseException):
    """Stands in for a worker killed mid-run: nothing in the job may catch it."""


class FlakyEmbedder(HashingEmbedder):
    """Hashing, but raises ``error`` on call number ``fail_on`` (1-based) to embed()."""

    def __init__(self, error: BaseException, fail_on: int = 1) -> None:
        super().__init__()
        self.error, self.fail_on, self.calls = error, fail_on, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error
        return super().embed(texts)


def chunk_state(document: Document) -> list[tuple[int, int, int, int]]:
    return list(document.chunks.order_by("index").values_list("id", "index", "page_start", "page_end"))


def test_task_is_declared_with_the_seed_name_and_cap() -> None:
    task = get_task(TASK_NAME)

    assert task.name == "process-chat-document"
    assert task.execution_timeout == 600
    assert task.retry_on_timeout is False


def test_multi_page_pdf_becomes_ready_with_its_counts_timings_and_embedder(
    make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf, "report.pdf")
    expected = chunk_pages(extract(text_pdf, "report.pdf").pages, *window_for("hashing"))

    result = process_document(document.pk)

    document.refresh_from_db()
    assert result["status"] == document.status == "ready"
    assert result["pages"] == document.page_count == 12
    assert result["chunks"] == document.chunk_count == len(expected) == document.chunks.count()
    assert document.error == ""
    assert document.processed_at is not None
    assert (document.embedder_name, document.embedder_version) == ("hashing", HashingEmbedder().version)
    assert set(document.timings) == {"load", "extract", "chunk", "embed", "store", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in document.timings.values())
    assert document.timings["total"] >= document.timings["extract"]
    chunks = list(document.chunks.order_by("index"))
    assert [c.index for c in chunks] == list(range(len(expected)))
    assert [(c.page_start, c.page_end, c.text) for c in chunks] == [
        (e.page_start, e.page_end, e.text) for e in expected
    ]
    assert {(c.embedder_name, c.embedder_version) for c in chunks} == {("hashing", HashingEmbedder().version)}
    vector = np.frombuffer(bytes(chunks[0].embedding), dtype="<f4")
    assert vector.shape == (HashingEmbedder().dim,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_phrase_from_page_n_is_found_by_search_with_page_n_cited(
    make_document: MakeDocument, text_pdf: bytes, marker: tuple[int, str], settings: Any
) -> None:
    settings.DOCUMENTS_SEARCH_MIN_SCORE = -1.0  # ranking and neighbours, not the relevance floor
    page, phrase = marker
    process_document(make_document(text_pdf, "report.pdf", title="Twelve pages").pk)

    results = retrieval.search_chunks(phrase)

    best = results.hits[0]
    assert best.document.title == "Twelve pages"
    assert best.chunk.page_start <= page <= best.chunk.page_end
    assert best.chunk.page_label == f"p. {page}"
    assert "<mark>Zanzibar</mark> <mark>marmalade</mark> <mark>quorum</mark>" in str(best.snippet)
    assert best.score > results.hits[1].score
    assert results.embedder.name == "hashing"
    assert results.searched == Chunk.objects.count()
    indexes = sorted(hit.chunk.index for hit in results.hits)  # overlapping neighbours are not repeated
    assert len(indexes) >= 3 and all(b - a > 1 for a, b in pairwise(indexes))


def test_text_and_markdown_files_are_processed(make_document: MakeDocument) -> None:
    text = make_document(b"Plain text about lighthouses and harbours.\n" * 200, "notes.txt", "text/plain")
    markdown = make_document(b"# Title\n\nSome *markdown* about sailing boats.\n" * 100, "readme.md")

    assert process_document(text.pk)["status"] == "ready"
    assert process_document(markdown.pk)["status"] == "ready"

    text.refresh_from_db()
    markdown.refresh_from_db()
    assert text.page_count and text.page_count >= 2  # split into ~3000-char pseudo-pages
    assert text.chunk_count and markdown.chunk_count
    assert retrieval.search_chunks("sailing boats").hits[0].document == markdown


@pytest.mark.parametrize(
    ("kind", "error_class", "message"),
    [
        ("not_pdf", "UnsupportedType", "not a PDF"),
        ("docx", "UnsupportedType", "unsupported file type: .docx"),
        ("encrypted", "EncryptedPdf", "encrypted PDF"),
        ("image_only", "NoTextError", "no extractable text (scanned?)"),
        ("oversized", "FileTooLarge", "file too large"),
        ("empty_text", "NoTextError", "no text: the file is empty"),
    ],
)
def test_bad_files_end_failed_with_their_message_and_the_job_does_not_raise(
    make_document: MakeDocument,
    pdf_factory: Callable[..., bytes],
    docx_bytes: bytes,
    text_pdf: bytes,
    settings: Any,
    kind: str,
    error_class: str,
    message: str,
) -> None:
    files = {
        "not_pdf": (b"Just some text, no PDF header at all.", "fake.pdf"),
        "docx": (docx_bytes, "letter.docx"),
        "encrypted": (pdf_factory(["secret"] * 2, user_password="hunter2"), "locked.pdf"),
        "image_only": (pdf_factory(["", ""], image_only=True), "scan.pdf"),
        "oversized": (text_pdf, "big.pdf"),
        "empty_text": (b"  \n\n ", "empty.txt"),
    }
    if kind == "oversized":
        settings.DOCUMENTS_MAX_UPLOAD_BYTES = len(text_pdf) - 1
    data, name = files[kind]
    document = make_document(data, name)

    result = process_document(document.pk)

    document.refresh_from_db()
    assert result["status"] == document.status == "failed"
    assert result["error_class"] == error_class
    assert result["error"] == document.error
    assert document.error.startswith(message)
    assert document.processed_at is not None
    assert document.chunk_count is None and not document.chunks.exists()


def test_a_missing_upload_fails_with_a_clear_message(make_document: MakeDocument, text_pdf: bytes) -> None:
    document = make_document(text_pdf)
    default_storage.delete(document.file.name)

    result = process_document(document.pk)

    document.refresh_from_db()
    assert (result["status"], result["error_class"]) == ("failed", "FileMissing")
    assert document.error == "the uploaded file is missing from storage: upload it again"


def test_a_wrong_embedder_setting_fails_the_document_with_a_clear_message(
    make_document: MakeDocument, text_pdf: bytes, settings: Any
) -> None:
    settings.DOCUMENTS_EMBEDDER = "word2vec"
    document = make_document(text_pdf)

    result = process_document(document.pk)

    document.refresh_from_db()
    assert (result["status"], result["error_class"]) == ("failed", "BadConfiguration")
    assert document.error.startswith("DOCUMENTS_EMBEDDER is wrong: unknown embedder 'word2vec'")


def test_a_deleted_document_is_reported_missing_not_raised() -> None:
    assert process_document(987654) == {
        "document_id": 987654,
        "status": "missing",
        "error": "document 987654 does not exist",
    }


def test_the_job_run_shows_the_exception_class_of_a_failed_document(
    make_document: MakeDocument,
    pdf_factory: Callable[..., bytes],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    document = make_document(pdf_factory(["secret"], user_password="pw"), "locked.pdf")

    with django_capture_on_commit_callbacks(execute=True):
        handle = fusion_jobs.enqueue(TASK_NAME, document_id=document.pk)

    run = JobRun.objects.get(pk=handle.run_id)
    document.refresh_from_db()
    assert (run.status, run.mode, run.error) == ("succeeded", "inline", "")
    assert run.result["status"] == "failed"
    assert run.result["error_class"] == "EncryptedPdf"
    assert run.result["error_code"] == "encrypted_pdf"
    assert run.result["error"] == document.error == "encrypted PDF: remove the password and upload it again"
    assert str(document.last_run_id) == handle.run_id


def test_progress_is_reported_per_stage(
    make_document: MakeDocument,
    text_pdf: bytes,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    calls: list[tuple[str, int | None, int | None]] = []
    real = fusion_jobs.report_progress

    def spy(stage: str, done: int | None = None, total: int | None = None) -> None:
        calls.append((stage, done, total))
        real(stage, done, total)

    monkeypatch.setattr(fusion_jobs, "report_progress", spy)
    monkeypatch.setattr(processing, "EMBED_BATCH", 4)
    document = make_document(text_pdf)

    with django_capture_on_commit_callbacks(execute=True):
        handle = fusion_jobs.enqueue(TASK_NAME, document_id=document.pk)

    document.refresh_from_db()
    n = document.chunk_count
    assert n is not None and n > 4
    stages = [stage for stage, _, _ in calls]
    assert stages == sorted(stages, key=["load", "extract", "chunk", "embed", "store"].index)
    assert ("extract", 12, 12) in calls
    assert ("chunk", n, n) in calls
    embed_done = [done for stage, done, _ in calls if stage == "embed"]
    assert embed_done[0] == 0 and embed_done[-1] == n and embed_done == sorted(embed_done)
    assert len(embed_done) == 1 + -(-n // 4)  # the start, then one per batch of 4
    run = JobRun.objects.get(pk=handle.run_id)
    assert (run.progress_stage, run.progress_done, run.progress_total) == ("store", n, n)


def test_a_crash_mid_embed_keeps_the_old_chunks_and_the_retry_leaves_one_set(
    make_document: MakeDocument, text_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processing, "EMBED_BATCH", 4)
    document = make_document(text_pdf)
    process_document(document.pk)
    first = chunk_state(document)

    with pytest.raises(Crash):  # the worker dies between two embedding batches
        process_document(document.pk, embedder=FlakyEmbedder(Crash(), fail_on=2))

    document.refresh_from_db()
    assert document.status == "processing"  # a redelivered attempt will pick it up
    assert chunk_state(document) == first  # untouched: the old set is still whole and searchable

    assert process_document(document.pk)["status"] == "ready"  # the retry

    after = chunk_state(document)
    assert [row[1:] for row in after] == [row[1:] for row in first]  # same chunks, exactly once
    assert not {row[0] for row in after} & {row[0] for row in first}  # all rows replaced
    assert Chunk.objects.filter(document=document).count() == len(first)


def test_copy_and_the_portable_insert_store_identical_chunks(
    make_document: MakeDocument, text_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    def stored(document: Document) -> list[tuple[Any, ...]]:
        rows = document.chunks.order_by("index").values_list(
            "index", "page_start", "page_end", "text", "embedding", "embedder_name", "embedder_version"
        )
        return [(*row[:4], bytes(row[4]), *row[5:]) for row in rows]

    document = make_document(text_pdf)
    process_document(document.pk)  # PostgreSQL: COPY
    via_copy = stored(document)
    monkeypatch.setattr(connection, "vendor", "sqlite")  # what SQLite and the others get: executemany
    process_document(document.pk)

    assert connection.vendor == "sqlite"
    assert stored(document) == via_copy and len(via_copy) > 1


def test_an_unexpected_error_mid_embed_fails_the_document_and_a_rerun_recovers(
    make_document: MakeDocument, text_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processing, "EMBED_BATCH", 4)
    document = make_document(text_pdf)
    process_document(document.pk)
    count = document.chunks.count()

    result = process_document(document.pk, embedder=FlakyEmbedder(RuntimeError("GPU on fire"), fail_on=2))

    document.refresh_from_db()
    assert result["status"] == document.status == "failed"
    assert result["error_class"] == "RuntimeError"
    assert "GPU on fire" in result["traceback"]
    assert document.error == "processing failed unexpectedly (RuntimeError); the job run has the details"
    assert not document.chunks.exists()  # a failed document is not searchable

    assert process_document(document.pk)["status"] == "ready"
    assert document.chunks.count() == count
    assert sorted(document.chunks.values_list("index", flat=True)) == list(range(count))


def test_a_run_taken_over_by_a_newer_run_discards_its_work(
    make_document: MakeDocument, text_pdf: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = make_document(text_pdf)
    older, newer = str(uuid.uuid4()), str(uuid.uuid4())
    monkeypatch.setattr(fusion_jobs, "current_run_id", lambda: older)

    class TakenOver(HashingEmbedder):
        def embed(self, texts: list[str]) -> np.ndarray:
            Document.objects.filter(pk=document.pk).update(last_run_id=newer)  # a newer run starts
            return super().embed(texts)

    result = process_document(document.pk, embedder=TakenOver())

    document.refresh_from_db()
    assert result == {"document_id": document.pk, "status": "superseded"}
    assert str(document.last_run_id) == newer
    assert document.status == "processing"  # left for the newer run to finish
    assert not document.chunks.exists()


def test_an_embedder_too_slow_for_the_budget_is_refused_before_embedding(
    make_document: MakeDocument, text_pdf: bytes, settings: Any
) -> None:
    settings.DOCUMENTS_EMBED_BUDGET_SECONDS = 540
    settings.DOCUMENTS_INLINE_BUDGET_SECONDS = 540  # called directly, outside a worker: the inline budget

    class Slow(HashingEmbedder):
        name = "minilm"
        embedded = False

        def estimate_seconds(self, n_chunks: int) -> float:
            return 5.0 + n_chunks * 100.0

        def embed(self, texts: list[str]) -> np.ndarray:
            self.embedded = True
            return super().embed(texts)

    slow = Slow()
    document = make_document(text_pdf)

    result = process_document(document.pk, embedder=slow)

    document.refresh_from_db()
    assert result["error_class"] == "EmbeddingTooSlow"
    assert document.status == "failed"
    assert re.fullmatch(
        r"embedding \d+ chunks with minilm would take about \d+ s, over the 5[34]\d s limit", document.error
    )
    assert slow.embedded is False


def test_the_worker_time_limit_marks_the_document_failed_and_still_interrupts(
    make_document: MakeDocument, text_pdf: bytes
) -> None:
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    document = make_document(text_pdf)

    with pytest.raises(TimeLimitExceeded):
        process_document(document.pk, embedder=FlakyEmbedder(TimeLimitExceeded()))

    document.refresh_from_db()
    assert document.status == "failed"
    assert document.error == "processing took longer than the job's 600 s limit"


def test_search_sees_chunks_written_by_another_process(
    make_document: MakeDocument,
    text_pdf: bytes,
    marker: tuple[int, str],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    """The cache is keyed by the generation token, so no in-process invalidate() is needed."""
    settings.DOCUMENTS_SEARCH_MIN_SCORE = -1.0  # the stale index's best chunks count, relevant or not
    first = make_document(b"Harbour cranes lift containers off the ships.\n" * 40, "harbour.txt")
    process_document(first.pk)
    assert retrieval.search_chunks("containers").hits  # builds and caches the index

    monkeypatch.setattr(processing.search, "invalidate", lambda key=None: None)  # as if in a worker
    second = make_document(text_pdf, "report.pdf")
    process_document(second.pk)

    best = retrieval.search_chunks(marker[1]).hits[0]
    assert best.document == second and best.chunk.page_label == f"p. {marker[0]}"

    second.delete()
    assert {hit.document for hit in retrieval.search_chunks(marker[1]).hits} == {first}


def test_search_only_compares_chunks_of_the_current_embedder(
    make_document: MakeDocument, text_pdf: bytes, settings: Any
) -> None:
    process_document(make_document(text_pdf).pk)
    Chunk.objects.update(embedder_version="hashing-v0-512")  # as if made by an older version

    assert retrieval.search_chunks("Zanzibar").hits == []
    assert retrieval.search_chunks("Zanzibar").searched == 0


def test_wordllama_by_default_finds_the_page_a_paraphrase_is_about(
    make_document: MakeDocument, topic_pdf: bytes, settings: Any
) -> None:
    settings.DOCUMENTS_EMBEDDER = "auto"
    document = make_document(topic_pdf, "topics.pdf")

    result = process_document(document.pk)

    assert (result["status"], result["embedder"]) == ("ready", "wordllama")
    for query, page in {
        "planets and galaxies seen through a telescope": 2,
        "how to cook noodles with tomato sauce": 1,
        "interest rates, inflation and the stock market": 6,
    }.items():
        best = retrieval.search_chunks(query).hits[0]
        assert best.chunk.page_start <= page <= best.chunk.page_end, (query, best.chunk)
