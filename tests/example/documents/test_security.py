"""The documents demo as an attacker would try it: odd file names, huge requests, a million-page PDF,
anonymous and repeated uploads, reprocessing someone else's document."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client
from django.urls import reverse

from example.documents.extract import TooManyPages, extract, probe_pdf
from example.documents.models import Document
from example.documents.processing import process_document
from fusion_jobs.models import JobRun

pytestmark = pytest.mark.usefixtures("media", "hashing")

MakeDocument = Callable[..., Document]


@pytest.fixture(autouse=True)
def clear_rate_limits() -> None:
    cache.clear()


@pytest.fixture
def user_client(client: Client, db: None) -> Client:
    client.force_login(get_user_model().objects.create_user("mallory", password="pw-for-tests"))
    return client


def upload(client: Client, data: bytes, name: str, content_type: str = "application/pdf") -> Any:
    return client.post(
        reverse("documents:list"), {"file": SimpleUploadedFile(name, data, content_type=content_type)}
    )


# --- File names ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "message"),
    [
        # 120 characters of four UTF-8 bytes each: Django counts 124 characters, the file system 484 bytes.
        ("\U00020000" * 120 + ".pdf", "file name too long"),
        # The extension alone overflows the field's max_length: storage raises SuspiciousFileOperation.
        ("a." + "b" * 120, "the file name cannot be stored"),
    ],
    ids=["too-long-in-bytes", "suspicious"],
)
def test_a_file_name_the_storage_cannot_take_is_a_form_error(
    user_client: Client, text_pdf: bytes, name: str, message: str
) -> None:
    response = upload(user_client, text_pdf, name)

    assert response.status_code == 200  # the form again, not a 500 (and no debug page)
    assert message in response.content.decode()
    assert not Document.objects.exists()
    assert not JobRun.objects.exists()


# --- Request size ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_oversized_upload_is_refused_before_its_body_reaches_the_disk(
    user_client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DOCUMENTS_MAX_UPLOAD_BYTES = 10_000
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file part would be streamed to a temporary file
    spooled: list[str] = []
    original = TemporaryFileUploadHandler.new_file

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        spooled.append(str(args[1] if len(args) > 1 else kwargs.get("file_name")))
        original(self, *args, **kwargs)

    monkeypatch.setattr(TemporaryFileUploadHandler, "new_file", spy)

    response = upload(user_client, b"%PDF-1.4\n" + b"0" * 3_000_000, "huge.pdf")

    assert response.status_code == 413
    assert "file too large" in response.content.decode()
    assert spooled == []
    assert not Document.objects.exists()


# --- The million-page PDF -------------------------------------------------------------------------


def test_the_probe_counts_a_million_pages_without_reading_them(million_page_pdf: bytes) -> None:
    assert len(million_page_pdf) < 17_000
    assert probe_pdf(million_page_pdf) == 1_000_000


@pytest.mark.django_db
def test_a_pdf_over_the_page_cap_is_refused_at_upload(user_client: Client, million_page_pdf: bytes) -> None:
    response = upload(user_client, million_page_pdf, "claims-a-million.pdf")

    assert response.status_code == 200
    assert "too many pages: 1,000,000, limit 5,000" in response.content.decode()
    assert not Document.objects.exists()


def test_the_job_refuses_a_pdf_over_the_cap_before_reading_a_page(million_page_pdf: bytes) -> None:
    pages_read: list[int] = []

    with pytest.raises(TooManyPages, match="too many pages: 1,000,000, limit 5,000"):
        extract(
            million_page_pdf, "x.pdf", max_pages=5000, on_page=lambda done, total: pages_read.append(done)
        )

    assert pages_read == []


@pytest.mark.django_db
def test_inline_processing_has_a_page_budget(
    settings: Any, make_document: MakeDocument, million_page_pdf: bytes
) -> None:
    """Under the upload cap but over the inline one: failed at once with what to do, not read for minutes."""
    settings.DOCUMENTS_MAX_PAGES = 2_000_000
    document = make_document(million_page_pdf)

    result = process_document(document.pk)  # outside a worker: the inline budget applies

    document.refresh_from_db()
    assert result["status"] == "failed" and result["error_code"] == "too_large_for_inline"
    assert document.status == "failed"
    assert "too many pages to process inline" in document.error and "FUSION_JOBS_BROKER_URL" in document.error


@pytest.mark.django_db
def test_inline_processing_has_a_time_budget(
    settings: Any, make_document: MakeDocument, million_page_pdf: bytes
) -> None:
    settings.DOCUMENTS_MAX_PAGES = settings.DOCUMENTS_INLINE_MAX_PAGES = 2_000_000
    settings.DOCUMENTS_INLINE_BUDGET_SECONDS = 0.5
    document = make_document(million_page_pdf)

    result = process_document(document.pk)

    document.refresh_from_db()
    assert result["status"] == "failed" and result["error_code"] == "over_budget"
    assert "over the time budget" in document.error
    assert document.status == "failed"


def test_reading_a_long_pdf_does_not_hold_pdfium_for_the_whole_document(
    million_page_pdf: bytes, text_pdf: bytes
) -> None:
    """Another upload's probe gets PDFium between two pages of a long extraction."""
    probing = threading.Event()
    probed = threading.Event()
    seen_while_reading: list[bool] = []

    def on_page(done: int, total: int) -> None:
        if done == 50:  # first progress callback, mid-document
            probing.set()
            seen_while_reading.append(probed.wait(timeout=15))
            raise StopIteration  # enough: stop reading the million pages

    def probe_other() -> None:
        probing.wait(timeout=15)
        probe_pdf(text_pdf)
        probed.set()

    other = threading.Thread(target=probe_other)
    other.start()
    with pytest.raises(StopIteration):
        extract(million_page_pdf, "long.pdf", max_pages=2_000_000, on_page=on_page)
    other.join(timeout=30)

    assert seen_while_reading == [True], "the probe waited for the whole document's PDFium lock"


# --- Who may start work ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_uploads_are_sent_to_the_login_page(client: Client, text_pdf: bytes) -> None:
    response = upload(client, text_pdf, "anonymous.pdf")

    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert not Document.objects.exists()
    assert not JobRun.objects.exists()


@pytest.mark.django_db
def test_uploads_are_rate_limited_per_user(
    user_client: Client,
    settings: Any,
    text_pdf: bytes,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    settings.DOCUMENTS_UPLOAD_RATE_LIMIT = "2/3600"

    with django_capture_on_commit_callbacks(execute=True):
        codes = [upload(user_client, text_pdf, f"n{i}.pdf").status_code for i in range(4)]

    assert codes == [302, 302, 429, 429]
    assert Document.objects.count() == 2
    other = Client()
    other.force_login(get_user_model().objects.create_user("someone-else", password="pw-for-tests"))
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(other, text_pdf, "theirs.pdf").status_code == 302


@pytest.mark.django_db
def test_only_the_owner_or_staff_may_reprocess(
    user_client: Client, make_document: MakeDocument, text_pdf: bytes
) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw-for-tests")
    document = make_document(text_pdf)
    Document.objects.filter(pk=document.pk).update(owner=owner)

    assert user_client.post(reverse("documents:reprocess", args=[document.pk])).status_code == 403
    assert Client().post(reverse("documents:reprocess", args=[document.pk])).status_code == 302  # to login
    assert not JobRun.objects.exists()
