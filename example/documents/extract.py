"""Turn an uploaded PDF, .txt or .md file into a list of page texts.

PDFs go through pypdfium2: it is permissively licensed and measured 8x faster than pypdf on this machine,
with flat memory because every page is closed as soon as it is read (``bench/documents.py`` measures it).
PDFium is entered one call at a time (:data:`PDFIUM_LOCK`), but the lock is taken per page, never for a
whole document: a long PDF does not stall every other upload. A PDF with more pages than the caller's
``max_pages`` is refused before any page is read, and ``deadline`` bounds the time spent reading.
Text files are split into pseudo-pages so that chunks can still point at "page N" in the viewer.

Every failure a user can cause raises a subclass of :class:`ExtractionError` whose ``str()`` is meant to be
shown to that user as is; ``code`` is a stable identifier for storing or branching on.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from example.core.conf import DEFAULTS

logger = logging.getLogger(__name__)

Kind = Literal["pdf", "text", "markdown"]
ProgressCallback = Callable[[int, int], None]

MB = 1024 * 1024
DEFAULT_MAX_BYTES: int = DEFAULTS["DOCUMENTS_MAX_UPLOAD_BYTES"]
DEFAULT_MAX_PAGES: int = DEFAULTS["DOCUMENTS_MAX_PAGES"]
PSEUDO_PAGE_CHARS = 3000
PROGRESS_EVERY = 50
SNIFF_BYTES = 2048

PDF_MAGIC = b"%PDF-"
TEXT_EXTENSIONS: dict[str, Kind] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
}
MIME_EXTENSIONS = {
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
}
_BINARY_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP or Office document"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"{\\rtf", "an RTF document"),
)
# PDFium marks a hyphen at a line break as U+0002; other C0 controls are noise in a text layer.
_CONTROL_CHARS = {c: None for c in range(32) if c not in (9, 10, 12)} | {2: "-"}
_MIN_TEXT_CHARS = 20
# PDFium may not be entered from two threads at once, not even for different documents: any other code in
# this process that calls pypdfium2 must hold this lock too (for one call or one page, not a document).
PDFIUM_LOCK = threading.Lock()


class ExtractionError(Exception):
    """A problem with the uploaded file itself; ``str(exc)`` is the message for the user."""

    code = "extraction_error"


class UnsupportedType(ExtractionError):
    code = "unsupported_type"


class EncryptedPdf(ExtractionError):
    code = "encrypted_pdf"

    def __init__(self, message: str = "encrypted PDF: remove the password and upload it again") -> None:
        super().__init__(message)


class NoTextError(ExtractionError):
    code = "no_text"

    def __init__(self, message: str = "no extractable text (scanned?)") -> None:
        super().__init__(message)


class FileTooLarge(ExtractionError):
    code = "file_too_large"

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(f"file too large: {size / MB:.1f} MB, limit {max_bytes / MB:.1f} MB")


class TooManyPages(ExtractionError):
    code = "too_many_pages"

    def __init__(self, pages: int, max_pages: int) -> None:
        self.pages = pages
        self.max_pages = max_pages
        super().__init__(f"too many pages: {pages:,}, limit {max_pages:,}")


class OverBudget(ExtractionError):
    """Reading took longer than the caller's deadline (inline processing has a tight one)."""

    code = "over_budget"


class CorruptPdf(ExtractionError):
    code = "corrupt_pdf"

    def __init__(self, message: str = "the PDF is damaged and cannot be read") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Extracted:
    """Page texts of one document; ``pages[0]`` is page 1."""

    pages: list[str]
    kind: Kind

    @property
    def page_count(self) -> int:
        return len(self.pages)


def sniff(
    first_bytes: bytes,
    filename: str,
    size: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    content_type: str | None = None,
) -> Kind:
    """Decide the kind from the first bytes and the name, so the upload view can refuse a bad file early.

    Magic bytes win over the extension: a PDF renamed to .txt is still read as a PDF, while a .pdf that
    does not start with ``%PDF-`` is refused. ``content_type`` is the browser's claim and is only used for
    a file without an extension. Raises the same exceptions as :func:`extract`.
    """
    if size > max_bytes:
        raise FileTooLarge(size, max_bytes)
    ext = Path(filename).suffix.lower()
    if not ext and content_type:
        ext = MIME_EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "")
    # PDF readers accept junk before the header as long as it sits in the first 1 KiB.
    if PDF_MAGIC in first_bytes[:1024]:
        return "pdf"
    if ext == ".pdf":
        raise UnsupportedType("not a PDF: the file does not start with a PDF header")
    kind = TEXT_EXTENSIONS.get(ext)
    if kind is None:
        shown = ext or "(no extension)"
        raise UnsupportedType(f"unsupported file type: {shown} — upload a PDF, .txt or .md")
    for magic, label in _BINARY_MAGICS:
        if first_bytes.startswith(magic):
            raise UnsupportedType(f"not a text file: it looks like {label} — upload a PDF, .txt or .md")
    if b"\x00" in first_bytes and not first_bytes.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnsupportedType("not a text file: it contains binary data — upload a PDF, .txt or .md")
    return kind


def extract(
    path_or_bytes: str | Path | bytes,
    filename: str,
    content_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_page: ProgressCallback | None = None,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    deadline: float | None = None,
) -> Extracted:
    """Extract page texts from a path or in-memory bytes (type checks as in :func:`sniff`).

    ``on_page(done, total)`` is called every ``PROGRESS_EVERY`` pages and once at the end. A PDF of more
    than ``max_pages`` pages raises :class:`TooManyPages` before any page is read; past ``deadline``
    (a ``time.monotonic()`` value) reading stops with :class:`OverBudget`.
    """
    if isinstance(path_or_bytes, bytes):
        size, head = len(path_or_bytes), path_or_bytes[:SNIFF_BYTES]
    else:
        path = Path(path_or_bytes)
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    kind = sniff(head, filename, size, max_bytes, content_type)

    if kind == "pdf":
        pages = _pdf_pages(path_or_bytes, on_page, max_pages, deadline)
        if _text_too_sparse(pages):
            raise NoTextError()
        return Extracted(pages=pages, kind=kind)

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    text = _decode(data)
    pages = split_pseudo_pages(text, markdown=kind == "markdown")
    if not pages:
        raise NoTextError("no text: the file is empty")
    if on_page is not None:
        on_page(len(pages), len(pages))
    return Extracted(pages=pages, kind=kind)


def probe_pdf(source: str | Path | bytes) -> int:
    """Open a PDF without reading its pages and return its page count.

    The upload form calls this so that a password-protected or damaged PDF is refused while the user is
    still on the page: opening parses only the trailer and cross-reference table, which takes
    milliseconds even for 1000 pages. Raises :class:`EncryptedPdf` or :class:`CorruptPdf`.
    """
    with PDFIUM_LOCK:
        doc = _open_pdf(source)
        try:
            return len(doc)
        finally:
            doc.close()


def _open_pdf(source: str | Path | bytes) -> Any:
    """Open with PDFium (the caller holds ``PDFIUM_LOCK``), mapping its error codes to user messages."""
    # lazy: PDFium is loaded only by a process that reads a PDF (not by the web process at start-up)
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        return pdfium.PdfDocument(source if isinstance(source, bytes) else Path(source))
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise EncryptedPdf() from exc
        if exc.err_code == pdfium_c.FPDF_ERR_SUCCESS:
            raise CorruptPdf("the PDF has no pages") from exc
        raise CorruptPdf() from exc


def _pdf_pages(
    source: str | Path | bytes, on_page: ProgressCallback | None, max_pages: int, deadline: float | None
) -> list[str]:
    """Read every page's text, holding ``PDFIUM_LOCK`` for one page at a time."""
    with PDFIUM_LOCK:
        doc = _open_pdf(source)
    pages: list[str] = []
    failed = 0
    try:
        with PDFIUM_LOCK:
            total = len(doc)
        if total > max_pages:
            raise TooManyPages(total, max_pages)
        for index in range(total):
            if deadline is not None and time.monotonic() > deadline:
                raise OverBudget(f"reading stopped after {index:,} of {total:,} pages: over the time budget")
            with PDFIUM_LOCK:
                text = _page_text(doc, index, total)
            if text is None:
                failed += 1
                text = ""
            pages.append(text)
            done = index + 1
            if on_page is not None and (done % PROGRESS_EVERY == 0 or done == total):
                on_page(done, total)
    finally:
        with PDFIUM_LOCK:
            doc.close()
    if failed == total:
        raise CorruptPdf("the PDF is damaged: none of its pages could be read")
    return pages


def _page_text(doc: Any, index: int, total: int) -> str | None:
    """One page's text (the caller holds ``PDFIUM_LOCK``), or None when PDFium cannot read it."""
    import pypdfium2 as pdfium  # lazy: as in _open_pdf

    try:
        page = doc[index]
        try:
            textpage = page.get_textpage()
            try:
                return _clean_pdf_text(textpage.get_text_range())
            finally:
                textpage.close()
        finally:
            page.close()
    except pdfium.PdfiumError:
        logger.warning("page %d of %d could not be read; keeping it empty", index + 1, total)
        return None


def _clean_pdf_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL_CHARS)


def _text_too_sparse(pages: list[str]) -> bool:
    """A scan has no text layer; a few stray characters (a page-number stamp) do not make it searchable."""
    sizes = [len("".join(p.split())) for p in pages]
    if sum(sizes) < _MIN_TEXT_CHARS:
        return True
    with_text = sum(1 for size in sizes if size >= _MIN_TEXT_CHARS)
    return len(pages) >= 20 and with_text / len(pages) < 0.02


def _decode(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    else:
        text = data.decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL_CHARS)


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_HEADING_BREAK = re.compile(r"\n(?=#{1,6} )")


def split_pseudo_pages(text: str, target_chars: int = PSEUDO_PAGE_CHARS, markdown: bool = False) -> list[str]:
    """Split plain text into page-like pieces: on form feeds, then about every ``target_chars``.

    Cuts prefer (for Markdown) a heading, then a blank line, then a line end, then a space, and never fall
    in the first half of a page, so pages stay close to the target size. Blank pieces are dropped.
    """
    pages: list[str] = []
    for section in text.split("\f"):
        start, n = 0, len(section)
        while start < n:
            end = n if n - start <= target_chars else _page_cut(section, start, target_chars, markdown)
            piece = section[start:end].strip("\n")
            if piece.strip():
                pages.append(piece)
            start = end
    return pages


def _page_cut(text: str, start: int, target: int, markdown: bool) -> int:
    lo, hi = start + target // 2, start + target
    window = text[lo:hi]
    patterns: list[re.Pattern[str]] = [_HEADING_BREAK] if markdown else []
    patterns += [_PARAGRAPH_BREAK, re.compile(r"\n"), re.compile(r"\s")]
    for pattern in patterns:
        matches = list(pattern.finditer(window))
        if matches:
            return lo + matches[-1].end()
    return hi
