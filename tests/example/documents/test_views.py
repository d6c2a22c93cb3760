"""The documents pages from a browser's point of view: upload, live status, detail, search, admin."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from example.documents.models import Chunk, Document
from example.documents.processing import process_document
from fusion_jobs.models import JobRun

pytestmark = pytest.mark.usefixtures("media", "hashing")

MakeDocument = Callable[..., Document]


@pytest.fixture
def client(client: Client, db: None) -> Client:
    """Uploading and reprocessing need a login: the tests act as a logged-in user unless they say not."""
    client.force_login(get_user_model().objects.create_user("uploader", password="pw-for-tests"))
    return client


def upload(
    client: Client, data: bytes, name: str, content_type: str = "application/pdf", **extra: str
) -> Any:
    return client.post(
        reverse("documents:list"),
        {"file": SimpleUploadedFile(name, data, content_type=content_type), **extra},
    )


@pytest.mark.django_db
def test_list_page_has_the_upload_form_search_box_and_jobs_mode(client: Client) -> None:
    response = client.get(reverse("documents:list"))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'type="file" name="file"' in html
    assert 'name="title"' in html
    assert '<button type="submit">Upload</button>' in html
    assert 'name="q"' in html
    assert "Processed inline: " in html  # no broker in the tests
    assert '<span class="badge badge-neutral">inline</span>' in html
    assert "Nothing uploaded yet" in html
    assert reverse("documents:list") in client.get(reverse("home")).content.decode()  # nav link + card


@pytest.mark.django_db(transaction=True)
def test_upload_without_a_broker_is_processed_inline_and_searchable(
    client: Client, text_pdf: bytes, marker: tuple[int, str]
) -> None:
    page, phrase = marker

    response = upload(client, text_pdf, "quarterly.pdf", title="Quarterly report")

    document = Document.objects.get()
    assert response.status_code == 302 and response["Location"] == document.get_absolute_url()
    assert document.owner is not None and document.owner.get_username() == "uploader"
    assert (document.title, document.original_name, document.size) == (
        "Quarterly report",
        "quarterly.pdf",
        len(text_pdf),
    )
    assert document.status == "ready" and document.page_count == 12
    run = JobRun.objects.get(pk=document.last_run_id)
    assert (run.task_name, run.mode, run.status) == ("process-chat-document", "inline", "succeeded")

    detail = client.get(response["Location"]).content.decode()
    assert "“Quarterly report” uploaded: processed inline." in detail
    assert ">Ready</span>" in detail
    assert "data-status-url" not in detail  # nothing left to poll
    assert reverse("admin:fusion_jobs_jobrun_change", args=[run.pk]) in detail
    assert "p. 1</span>" in detail  # the chunk preview cites its page

    results = client.get(reverse("documents:search"), {"q": phrase}).content.decode()
    assert f'<span class="doc-cite">p. {page}</span>' in results
    assert "<mark>Zanzibar</mark> <mark>marmalade</mark> <mark>quorum</mark>" in results
    assert f'href="{document.get_absolute_url()}">Quarterly report</a>' in results


@pytest.mark.django_db(transaction=True)
def test_the_title_defaults_to_the_file_name_and_the_owner_is_the_logged_in_user(
    client: Client, text_pdf: bytes
) -> None:
    user = get_user_model().objects.create_user("ada", password="pw-for-tests")
    client.force_login(user)  # instead of the fixture's user

    upload(client, text_pdf, "annual-report.pdf")

    document = Document.objects.get()
    assert (document.title, document.owner) == ("annual-report", user)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("docx", "unsupported file type: .docx — upload a PDF, .txt or .md"),
        ("image", "not a text file: it looks like a PNG image"),
        ("fake_pdf", "not a PDF: the file does not start with a PDF header"),
        ("encrypted", "encrypted PDF: remove the password and upload it again"),
        ("oversized", "file too large"),
    ],
)
def test_bad_uploads_are_refused_with_their_message(
    client: Client,
    settings: Any,
    docx_bytes: bytes,
    pdf_factory: Callable[..., bytes],
    text_pdf: bytes,
    kind: str,
    message: str,
) -> None:
    files = {
        "docx": (docx_bytes, "letter.docx", "application/octet-stream"),
        "image": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "picture.txt", "text/plain"),
        "fake_pdf": (b"hello, not really a PDF", "fake.pdf", "application/pdf"),
        "encrypted": (pdf_factory(["secret"], user_password="hunter2"), "locked.pdf", "application/pdf"),
        "oversized": (text_pdf, "big.pdf", "application/pdf"),
    }
    settings.DOCUMENTS_MAX_UPLOAD_BYTES = len(text_pdf) - 1
    data, name, content_type = files[kind]

    response = upload(client, data, name, content_type)

    assert response.status_code == 200  # the form again, with the error
    assert message in response.content.decode()
    assert 'class="doc-error" role="alert"' in response.content.decode()
    assert not Document.objects.exists()
    assert not JobRun.objects.exists()


@pytest.mark.django_db
def test_a_pdf_with_only_an_owner_password_is_accepted(
    client: Client, pdf_factory: Callable[..., bytes], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    data = pdf_factory(["Anyone may read this page, only printing is restricted."], owner_only=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, data, "restricted.pdf")

    assert response.status_code == 302
    assert Document.objects.get().status == "ready"


@pytest.mark.django_db
def test_an_image_only_pdf_is_accepted_and_fails_in_the_job_with_its_message(
    client: Client, pdf_factory: Callable[..., bytes], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, pdf_factory(["", ""], image_only=True), "scan.pdf")

    document = Document.objects.get()
    assert document.status == "failed"
    detail = client.get(response["Location"]).content.decode()
    assert ">Failed</span>" in detail
    assert "no extractable text (scanned?)" in detail


def own(document: Document, username: str = "uploader") -> None:
    """Make the fixture's user the owner: only the owner (or staff) may reprocess."""
    Document.objects.filter(pk=document.pk).update(owner=get_user_model().objects.get(username=username))


def make_run(document: Document, **fields: Any) -> JobRun:
    run = JobRun.objects.create(
        task_name="process-chat-document", kwargs={"document_id": document.pk}, **fields
    )
    Document.objects.filter(pk=document.pk).update(last_run_id=run.pk)
    return run


@pytest.mark.django_db
def test_status_json_follows_the_run_progress(
    client: Client, make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf)
    run = make_run(document, status="queued", mode="worker")
    url = reverse("documents:status", args=[document.pk])

    queued = client.get(url).json()
    assert queued["active"] is True
    assert queued["progress"]["label"] == "Waiting for a worker"
    assert queued["run"] == {"id": str(run.pk), "status": "queued", "mode": "worker", "attempts": 0}

    JobRun.objects.filter(pk=run.pk).update(
        status="running", progress_stage="embed", progress_done=100, progress_total=400
    )
    Document.objects.filter(pk=document.pk).update(status="processing")
    running = client.get(url)
    assert running["Cache-Control"] == "no-store"
    data = running.json()
    assert (data["status"], data["status_display"], data["active"]) == ("processing", "Processing", True)
    assert data["progress"]["label"] == "Embedding: 100 / 400 chunks"
    assert data["progress"]["percent"] == pytest.approx(61.2)  # embed spans 50-95 % of the bar

    process_document(document.pk)
    done = client.get(url).json()
    assert (done["status_display"], done["active"], done["page_count"]) == ("Ready", False, 12)
    assert done["chunk_count"] == Chunk.objects.filter(document=document).count()
    assert set(done["timings"]) >= {"extract", "chunk", "embed", "store"}


@pytest.mark.django_db
def test_a_document_whose_run_died_is_shown_as_stalled_not_polled(
    client: Client, make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf)
    make_run(document, status="timed_out", mode="worker", error="HardTimeLimit: worker restarted")
    Document.objects.filter(pk=document.pk).update(status="processing")

    data = client.get(reverse("documents:status", args=[document.pk])).json()
    page = client.get(document.get_absolute_url()).content.decode()

    assert data["active"] is False
    assert (
        data["stalled"]
        == "its job run ended (timed out) without finishing it: HardTimeLimit: worker restarted"
    )
    assert "Its job run ended (timed out)" in page
    assert "data-status-url" not in page


@pytest.mark.django_db
def test_list_polls_only_unfinished_documents(
    client: Client, make_document: MakeDocument, text_pdf: bytes
) -> None:
    waiting = make_document(text_pdf, "waiting.pdf")
    make_run(waiting, status="queued", mode="worker")
    done = make_document(text_pdf, "done.pdf")
    process_document(done.pk)

    html = client.get(reverse("documents:list")).content.decode()

    assert f'data-status-url="{reverse("documents:status", args=[waiting.pk])}"' in html
    assert reverse("documents:status", args=[done.pk]) not in html
    assert "Waiting for a worker" in html
    assert "documents/documents.js" in html


@pytest.mark.django_db
def test_status_json_of_an_unknown_document_is_404(client: Client) -> None:
    assert client.get(reverse("documents:status", args=[424242])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_reprocess_replaces_the_chunks_through_a_new_run(
    client: Client, make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf)
    own(document)
    process_document(document.pk)
    old_ids = set(document.chunks.values_list("id", flat=True))

    response = client.post(reverse("documents:reprocess", args=[document.pk]), follow=True)

    document.refresh_from_db()
    new_ids = set(document.chunks.values_list("id", flat=True))
    assert response.redirect_chain[-1][0] == document.get_absolute_url()
    assert "is being reprocessed: processed inline." in response.content.decode()
    assert document.status == "ready"
    assert len(new_ids) == len(old_ids) and not new_ids & old_ids
    assert JobRun.objects.get(pk=document.last_run_id).status == "succeeded"


@pytest.mark.django_db
def test_reprocess_is_refused_while_a_run_is_on_it(
    client: Client, make_document: MakeDocument, text_pdf: bytes
) -> None:
    document = make_document(text_pdf)
    own(document)
    run = make_run(document, status="running", mode="worker")
    Document.objects.filter(pk=document.pk).update(status="processing")

    response = client.post(reverse("documents:reprocess", args=[document.pk]), follow=True)

    assert "is already being processed" in response.content.decode()
    assert list(JobRun.objects.values_list("pk", flat=True)) == [run.pk]
    assert client.get(reverse("documents:reprocess", args=[document.pk])).status_code == 405


@pytest.mark.django_db
def test_search_escapes_document_text_and_marks_only_matches(
    client: Client, make_document: MakeDocument
) -> None:
    text = b"<script>alert('x')</script> The lighthouse keeper counted cranes. <b>bold</b>\n"
    process_document(make_document(text * 3, "evil.txt", title="<i>Evil</i>").pk)

    html = client.get(reverse("documents:search"), {"q": "lighthouse keeper"}).content.decode()

    assert "<script>alert" not in html and "<b>bold</b>" not in html and "<i>Evil</i>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;i&gt;Evil&lt;/i&gt;" in html
    assert "<mark>lighthouse</mark> <mark>keeper</mark>" in html
    assert "p. 1</span>" in html


@pytest.mark.django_db
def test_search_page_before_anything_is_uploaded(client: Client) -> None:
    empty = client.get(reverse("documents:search")).content.decode()
    nothing = client.get(reverse("documents:search"), {"q": "anything"}).content.decode()

    assert "No documents are ready yet" in empty
    assert "Nothing to search yet" in nothing


@pytest.mark.django_db
def test_detail_page_of_an_unknown_document_is_404(client: Client) -> None:
    assert client.get(reverse("documents:detail", args=[424242])).status_code == 404


@pytest.fixture
def admin_client_(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests"))
    return client


@pytest.mark.django_db
def test_admin_lists_documents_with_badges_timings_and_the_run_link(
    admin_client_: Client,
    make_document: MakeDocument,
    text_pdf: bytes,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    import fusion_jobs

    document = make_document(text_pdf, "report.pdf", title="Admin me")
    with django_capture_on_commit_callbacks(execute=True):
        handle = fusion_jobs.enqueue("process-chat-document", document_id=document.pk)

    listing = admin_client_.get(reverse("admin:documents_document_changelist")).content.decode()
    change = admin_client_.get(
        reverse("admin:documents_document_change", args=[document.pk])
    ).content.decode()
    chunks = admin_client_.get(
        reverse("admin:documents_chunk_changelist"), {"q": "Zanzibar"}
    ).content.decode()

    assert "Admin me" in listing and ">Ready</span>" in listing
    assert reverse("admin:fusion_jobs_jobrun_change", args=[handle.run_id]) in change
    assert "<td>Extracting text</td>" in change
    matching = Chunk.objects.filter(text__contains="Zanzibar")
    assert matching.exists()
    assert all(f'<td class="field-pages">{c.page_label}</td>' in chunks for c in matching)
    assert f"{document.pk}#0 (p. 1)" not in chunks  # filtered out by the text search...
    assert (
        f"{document.pk}#0 (p. 1)"
        in admin_client_.get(reverse("admin:documents_chunk_changelist")).content.decode()
    )
    assert admin_client_.get(reverse("admin:documents_document_add")).status_code == 403


@pytest.mark.django_db
def test_admin_reprocess_action_runs_the_job_again(
    admin_client_: Client,
    make_document: MakeDocument,
    text_pdf: bytes,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    document = make_document(text_pdf)
    Document.objects.filter(pk=document.pk).update(
        status="failed", error="old failure", last_run_id=uuid.uuid4()
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            reverse("admin:documents_document_changelist"),
            {"action": "reprocess", "_selected_action": [document.pk]},
            follow=True,
        )

    document.refresh_from_db()
    assert "Reprocessing 1 document(s)." in response.content.decode()
    assert (document.status, document.error) == ("ready", "")
    assert JobRun.objects.filter(kwargs__document_id=document.pk, status="succeeded").count() == 1
