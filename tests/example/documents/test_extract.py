from __future__ import annotations

import codecs
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from example.documents.extract import (
    MB,
    CorruptPdf,
    EncryptedPdf,
    ExtractionError,
    FileTooLarge,
    NoTextError,
    UnsupportedType,
    extract,
    probe_pdf,
    sniff,
    split_pseudo_pages,
)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_pdf_pages_hold_their_own_text(
    text_pdf: bytes, page_texts: list[str], marker: tuple[int, str]
) -> None:
    marker_page, phrase = marker
    result = extract(text_pdf, "report.pdf")

    assert result.kind == "pdf"
    assert result.page_count == len(page_texts) == 12
    assert [flat(p) for p in result.pages] == [flat(t) for t in page_texts]
    assert phrase in flat(result.pages[marker_page - 1])
    assert all(phrase not in flat(p) for i, p in enumerate(result.pages) if i != marker_page - 1)
    assert "\r" not in "".join(result.pages)


def test_pdf_from_path_matches_bytes(text_pdf: bytes, tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(text_pdf)

    assert extract(path, "report.pdf").pages == extract(text_pdf, "report.pdf").pages


def test_progress_is_reported_every_50_pages_and_at_the_end(long_pdf: bytes) -> None:
    calls: list[tuple[int, int]] = []

    result = extract(long_pdf, "long.pdf", on_page=lambda done, total: calls.append((done, total)))

    assert result.page_count == 120
    assert calls == [(50, 120), (100, 120), (120, 120)]
    assert flat(result.pages[99]) == "Page 100 of the long file."


def test_pdf_with_user_password_is_refused(pdf_factory: Callable[..., bytes]) -> None:
    data = pdf_factory(["secret text"] * 2, user_password="hunter2")

    with pytest.raises(EncryptedPdf, match="encrypted PDF"):
        extract(data, "locked.pdf")


def test_pdf_with_only_an_owner_password_opens(pdf_factory: Callable[..., bytes]) -> None:
    data = pdf_factory(["Permissions only, anyone may read this page."], owner_only=True)

    assert flat(extract(data, "restricted.pdf").pages[0]) == "Permissions only, anyone may read this page."


def test_image_only_pdf_has_no_text(pdf_factory: Callable[..., bytes]) -> None:
    data = pdf_factory(["", "", ""], image_only=True)

    with pytest.raises(NoTextError, match=r"no extractable text \(scanned\?\)"):
        extract(data, "scan.pdf")


def test_docx_is_unsupported(docx_bytes: bytes) -> None:
    with pytest.raises(UnsupportedType) as excinfo:
        extract(docx_bytes, "Report.DOCX")

    assert str(excinfo.value) == "unsupported file type: .docx — upload a PDF, .txt or .md"
    assert excinfo.value.code == "unsupported_type"


def test_pdf_name_without_pdf_bytes_is_not_a_pdf(docx_bytes: bytes) -> None:
    with pytest.raises(UnsupportedType, match=r"^not a PDF"):
        extract(docx_bytes, "report.pdf")


def test_binary_renamed_to_txt_is_refused(docx_bytes: bytes) -> None:
    with pytest.raises(UnsupportedType, match=r"not a text file.*ZIP"):
        extract(docx_bytes, "notes.txt")


def test_truncated_pdf_is_corrupt(text_pdf: bytes) -> None:
    with pytest.raises(CorruptPdf):
        extract(text_pdf[:400], "cut.pdf")


def test_oversize_file_is_refused_with_sizes_in_the_message() -> None:
    data = b"a" * int(12.3 * MB)

    with pytest.raises(FileTooLarge) as excinfo:
        extract(data, "big.txt", max_bytes=10 * MB)

    assert str(excinfo.value) == "file too large: 12.3 MB, limit 10.0 MB"


def test_all_errors_share_one_base_class() -> None:
    for error in (UnsupportedType, EncryptedPdf, NoTextError, FileTooLarge, CorruptPdf):
        assert issubclass(error, ExtractionError)


def test_sniff_trusts_magic_bytes_over_the_extension() -> None:
    assert sniff(b"%PDF-1.7\n...", "actually-a-pdf.txt", 100) == "pdf"
    assert sniff(b"\n\n%PDF-1.4\n", "leading-junk.pdf", 100) == "pdf"
    assert sniff(b"# Title\n", "README.md", 100) == "markdown"
    assert sniff(b"plain", "notes.TXT", 100) == "text"
    with pytest.raises(UnsupportedType, match=r"unsupported file type: \(no extension\)"):
        sniff(b"plain", "Makefile", 100)
    with pytest.raises(FileTooLarge):
        sniff(b"%PDF-1.7", "x.pdf", 11 * MB, max_bytes=10 * MB)


def test_content_type_names_the_kind_of_a_file_without_extension() -> None:
    assert extract(
        b"# Heading\n\nBody text.", "upload", content_type="text/markdown; charset=utf-8"
    ).kind == ("markdown")


def test_text_file_splits_on_form_feeds() -> None:
    result = extract(b"first page\n\fsecond page\fthird page\n", "notes.txt")

    assert result.kind == "text"
    assert result.pages == ["first page", "second page", "third page"]


def test_long_text_is_split_into_pseudo_pages_at_paragraph_breaks() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * (20 + i % 30) for i in range(200)]
    text = "\n\n".join(p.strip() for p in paragraphs)

    pages = split_pseudo_pages(text, target_chars=3000)

    assert len(pages) > 5
    assert all(len(page) <= 3000 for page in pages)
    assert all(len(page) >= 1500 for page in pages[:-1])
    # Every cut falls between paragraphs, so each page is a whole number of paragraphs.
    assert [p for page in pages for p in page.split("\n\n")] == [p.strip() for p in paragraphs]


def test_markdown_prefers_to_cut_before_a_heading() -> None:
    sections = [f"## Section {i}\n\n" + ("Some text here. " * 40).strip() for i in range(10)]

    result = extract("\n\n".join(sections).encode(), "guide.md")

    assert result.kind == "markdown"
    assert result.page_count > 1
    assert all(page.startswith("## Section") for page in result.pages)


def test_text_decoding_handles_bom_crlf_and_utf16() -> None:
    assert extract(codecs.BOM_UTF8 + "Café\r\nZürich".encode(), "a.txt").pages == ["Café\nZürich"]
    assert extract("Ångström".encode("utf-16"), "b.txt").pages == ["Ångström"]


def test_blank_text_file_has_no_text() -> None:
    with pytest.raises(NoTextError, match="empty"):
        extract(b"  \n\n\f \n", "blank.md")


def test_a_long_scan_with_only_a_typed_cover_page_counts_as_no_text(
    pdf_factory: Callable[..., bytes],
) -> None:
    cover = "Annual report 2023, scanned by the records office."
    data = pdf_factory([cover] + [""] * 59)

    with pytest.raises(NoTextError):
        extract(data, "scan.pdf")
    assert flat(extract(pdf_factory([cover, "", ""]), "short.pdf").pages[0]) == cover


def test_sniff_uses_the_content_type_only_without_an_extension() -> None:
    assert sniff(b"# Notes", "notes", 7, content_type="text/markdown") == "markdown"
    with pytest.raises(UnsupportedType, match=r"^not a PDF"):
        sniff(b"PK\x03\x04", "upload", 4, content_type="application/pdf")
    with pytest.raises(UnsupportedType, match=r"\.docx"):
        sniff(b"PK\x03\x04", "a.docx", 4, content_type="text/plain")


def test_concurrent_extractions_from_threads_are_serialised(text_pdf: bytes, long_pdf: bytes) -> None:
    expected = {"a": extract(text_pdf, "a.pdf").pages, "b": extract(long_pdf, "b.pdf").pages}
    results: dict[str, list[list[str]]] = {"a": [], "b": []}

    def work(name: str, data: bytes) -> None:
        for _ in range(3):
            results[name].append(extract(data, f"{name}.pdf").pages)

    threads = [threading.Thread(target=work, args=(n, d)) for n, d in (("a", text_pdf), ("b", long_pdf))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {name: [pages] * 3 for name, pages in expected.items()}


def test_probe_pdf_counts_pages_and_refuses_locked_or_damaged_files(
    text_pdf: bytes, pdf_factory: Callable[..., bytes], tmp_path: Path
) -> None:
    path = tmp_path / "upload.pdf"
    path.write_bytes(text_pdf)

    assert probe_pdf(text_pdf) == 12
    assert probe_pdf(str(path)) == 12
    assert probe_pdf(pdf_factory(["readable"], owner_only=True)) == 1
    with pytest.raises(EncryptedPdf, match="encrypted PDF"):
        probe_pdf(pdf_factory(["secret"], user_password="pw"))
    with pytest.raises(CorruptPdf):
        probe_pdf(b"%PDF-1.7\n" + b"garbage" * 50)
