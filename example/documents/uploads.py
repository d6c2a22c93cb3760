"""Refuse an oversized upload before its body is read, instead of after it is streamed whole to disk.

Installed first in ``FILE_UPLOAD_HANDLERS``: it looks at ``Content-Length`` before Django's multipart
parser reads anything, and counts the bytes as they arrive (a chunked request has no length). Past
``DOCUMENTS_MAX_UPLOAD_BYTES`` plus form overhead it stops the upload and marks the request, so the view
answers 413 with a form error. Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bounds the non-file fields.
"""

from __future__ import annotations

from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from . import conf
from .extract import FileTooLarge

#: Set on ``request.META`` when the upload was stopped: the user-facing message.
REFUSED = "example.documents.upload_refused"


class RequestSizeLimitHandler(FileUploadHandler):
    """Stops the multipart parser as soon as the request is known to be too large."""

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: Any,
        encoding: str | None = None,
    ) -> None:
        self.received = 0
        self.limit = conf.max_request_bytes()
        # Raised from new_file(), inside the parser's StopUpload handling; the small fields before the
        # file (the CSRF token) are parsed by then.
        self.too_large = content_length if content_length > self.limit else 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if getattr(self, "too_large", 0):
            self._refuse(self.too_large)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received = getattr(self, "received", 0) + len(raw_data)
        if self.received > getattr(self, "limit", conf.max_request_bytes()):
            self._refuse(self.received)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None

    def _refuse(self, size: int) -> None:
        if self.request is not None:
            self.request.META[REFUSED] = str(FileTooLarge(size, conf.max_upload_bytes()))
        raise StopUpload(connection_reset=True)
