"""The upload form: refuse what the job would refuse anyway, while the user is still on the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from . import conf
from .extract import SNIFF_BYTES, ExtractionError, Kind, probe_pdf, sniff
from .models import Document

ACCEPT = ".pdf,.txt,.md,.markdown,application/pdf,text/plain,text/markdown"


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
        try:
            upload.seek(0)
            head = upload.read(SNIFF_BYTES)
            upload.seek(0)
            self.kind = sniff(head, name, upload.size or 0, conf.max_upload_bytes(), upload.content_type)
            if self.kind == "pdf":
                probe_pdf(_pdf_source(upload))
                upload.seek(0)
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
        document.file.save(name, upload, save=False)
        document.save()
        return document


def _pdf_source(upload: UploadedFile) -> str | bytes:
    """Large uploads are already on disk (a temporary file): let PDFium read it there instead of copying."""
    path = getattr(upload, "temporary_file_path", None)
    if path is not None:
        return str(path())
    data: bytes = upload.read()
    return data
