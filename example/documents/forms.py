"""The upload form: refuse what the job would refuse anyway, while the user is still on the page."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from django import forms
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.uploadedfile import UploadedFile

from . import conf
from .extract import SNIFF_BYTES, ExtractionError, Kind, TooManyPages, probe_pdf, sniff
from .models import Document

ACCEPT = ".pdf,.txt,.md,.markdown,application/pdf,text/plain,text/markdown"
#: File systems allow 255 bytes per name; keep room for the suffix storage adds to avoid a clash.
MAX_NAME_BYTES = 200
MAX_SUFFIX_CHARS = 16
NAME_TOO_LONG = (
    f"file name too long: at most {MAX_NAME_BYTES} bytes (UTF-8); rename the file and upload it again"
)
BAD_NAME = "the file name cannot be stored: rename the file and upload it again"


class UploadForm(forms.Form):
    file = forms.FileField(
        label="File",
        help_text="A PDF, .txt or .md file.",
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT}),
    )
    title = forms.CharField(
        label="Title",
        max_length=255,
        required=False,
        help_text="Optional; the file name is used otherwise.",
        widget=forms.TextInput(attrs={"placeholder": "Defaults to the file name"}),
    )

    kind: Kind | None = None

    def clean_file(self) -> UploadedFile:
        """Type and size from the first bytes (``extract.sniff``), and a PDF must open without a password.

        A scanned PDF cannot be told from a text PDF without reading it all, so that one is left to the
        job, which fails it with "no extractable text (scanned?)".
        """
        upload: UploadedFile = self.cleaned_data["file"]
        name = upload.name or ""
        check_file_name(name)
        try:
            upload.seek(0)
            head = upload.read(SNIFF_BYTES)
            upload.seek(0)
            self.kind = sniff(head, name, upload.size or 0, conf.max_upload_bytes(), upload.content_type)
            if self.kind == "pdf":
                pages = probe_pdf(_pdf_source(upload))
                upload.seek(0)
                if pages > conf.max_pages():
                    raise TooManyPages(pages, conf.max_pages())
        except ExtractionError as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from exc
        return upload

    def save(self, owner: Any = None) -> Document:
        upload: UploadedFile = self.cleaned_data["file"]
        name = Path(upload.name or "upload").name
        title = (self.cleaned_data.get("title") or "").strip() or Path(name).stem or name
        document = Document(
            owner=owner if owner is not None and owner.is_authenticated else None,
            title=title[:255],
            original_name=name[:255],
            content_type=(upload.content_type or "")[:100],
            size=upload.size or 0,
        )
        try:
            document.file.save(name, upload, save=False)
        except SuspiciousFileOperation as exc:
            raise forms.ValidationError(BAD_NAME, code="bad_name") from exc
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise forms.ValidationError(NAME_TOO_LONG, code="name_too_long") from exc
        document.save()
        return document


def check_file_name(name: str) -> None:
    """Refuse a name the storage would choke on (``OSError: File name too long``, ``SuspiciousFileOperation``).

    Characters outside the BMP take four bytes each, so a name that Django's character count accepts can
    still be too long for the file system.
    """
    base = Path(name).name
    if len(os.fsencode(base)) > MAX_NAME_BYTES:
        raise forms.ValidationError(NAME_TOO_LONG, code="name_too_long")
    if len(Path(base).suffix) > MAX_SUFFIX_CHARS:
        raise forms.ValidationError(BAD_NAME, code="bad_name")
    try:
        stored = Document._meta.get_field("file").generate_filename(None, base)
    except SuspiciousFileOperation as exc:
        raise forms.ValidationError(BAD_NAME, code="bad_name") from exc
    if not Path(stored).stem:
        raise forms.ValidationError(BAD_NAME, code="bad_name")


def _pdf_source(upload: UploadedFile) -> str | bytes:
    """Large uploads are already on disk (a temporary file): let PDFium read it there instead of copying."""
    path = getattr(upload, "temporary_file_path", None)
    if path is not None:
        return str(path())
    data: bytes = upload.read()
    return data
