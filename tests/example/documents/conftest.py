"""PDF and text fixtures for the document pipeline, generated with fpdf2 so no binary files are committed."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fpdf import FPDF
from PIL import Image

# Page text with a phrase that appears nowhere else, to check which page text lands on.
MARKER_PAGE = 7
MARKER = "Zanzibar marmalade quorum"

TOPIC_PAGES = [
    (
        "Pasta needs a large pot of salted boiling water. Stir the spaghetti during the first minute so it "
        "does not stick, and taste it a minute before the time on the packet. Keep a cup of the starchy "
        "cooking water to loosen the tomato sauce, then toss the drained noodles in the pan with garlic, "
        "olive oil, basil and grated parmesan cheese. A good recipe for dinner tastes of fresh herbs and "
        "ripe tomatoes, and the kitchen smells of onions frying slowly in butter. Serve the meal hot."
    ),
    (
        "On a clear night far from city lights the sky fills with stars. Through a small telescope Jupiter "
        "shows four bright moons and Saturn shows its rings. Astronomers measure the distance to galaxies "
        "with the light of exploding supernovae, and the planets of our solar system orbit the sun on "
        "nearly flat ellipses. Comets grow bright tails as they approach the sun. The Milky Way is a "
        "spiral galaxy of hundreds of billions of stars, and the nearest star is four light years away."
    ),
    (
        "The striker received the ball at the edge of the penalty area, beat two defenders and shot past "
        "the goalkeeper into the corner of the net. The crowd in the stadium roared. The referee showed a "
        "yellow card for a late tackle in midfield, and the coach made a substitution in the second half. "
        "After ninety minutes the home team won the football match two goals to one and moved to the top "
        "of the league table. Fans sang in the stands long after the final whistle of the game."
    ),
    (
        "A router forwards packets between networks by reading the destination address in each header. "
        "TCP splits a stream of bytes into segments, numbers them, and retransmits the ones that are not "
        "acknowledged, while DNS translates host names into IP addresses. A firewall filters traffic by "
        "port and protocol. When the server does not answer, a client waits for a timeout and retries "
        "the connection. Bandwidth and latency together decide how fast a web page loads over the internet."
    ),
    (
        "The oak forest changes with the seasons. In spring the trees put out new leaves and wild flowers "
        "cover the ground before the canopy closes. Deer graze in the clearings at dawn, owls hunt mice at "
        "night, and squirrels bury acorns in autumn. Rain soaks into the moss and feeds the streams that "
        "run down the valley to the river. Woodpeckers drum on dead branches, and fungi slowly turn "
        "fallen logs back into rich soil. Hikers follow a trail through the woods to a waterfall."
    ),
    (
        "The central bank raised interest rates to slow inflation, and mortgage payments went up for many "
        "households. Stock markets fell on the news, while the currency gained against the dollar. "
        "Investors moved money into government bonds, which pay a fixed coupon. Companies reported lower "
        "profits as consumers spent less, and economists warned of a recession next year. A diversified "
        "portfolio of shares and savings helps a family manage financial risk over the long term."
    ),
]


def make_pdf(
    pages: list[str], *, user_password: str | None = None, owner_only: bool = False, image_only: bool = False
) -> bytes:
    pdf = FPDF(format="A4")
    if user_password is not None or owner_only:
        pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        if image_only:
            # A "scan": a raster picture with words drawn into the pixels, and no text layer at all.
            image = Image.new("L", (400, 200), 255)
            for y in range(20, 180, 12):
                for x in range(20, 380, 3):
                    image.putpixel((x, y), 0)
            pdf.image(image, x=15, y=15, w=180)
        else:
            pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


VOCABULARY = [
    "apple",
    "river",
    "stone",
    "window",
    "garden",
    "letter",
    "silver",
    "engine",
    "morning",
    "castle",
    "market",
    "pencil",
    "harbor",
    "winter",
    "candle",
    "mirror",
    "forest",
    "ladder",
    "button",
    "island",
    "thunder",
    "pocket",
    "meadow",
    "lantern",
    "violin",
    "orchard",
    "compass",
    "blanket",
    "feather",
    "tunnel",
    "valley",
    "bridge",
    "rocket",
    "saddle",
    "chimney",
    "pillow",
    "basket",
    "cloud",
    "falcon",
    "ember",
]


def page_text(number: int, rng: random.Random) -> str:
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(60, 140))]
    body = " ".join(words)
    if number == MARKER_PAGE:
        body += f" {MARKER}."
    return f"Page {number} begins here. {body[0].upper()}{body[1:]}."


@pytest.fixture(scope="session")
def marker() -> tuple[int, str]:
    """(page number, phrase) of the one phrase in ``text_pdf`` that appears on a single page."""
    return MARKER_PAGE, MARKER


@pytest.fixture(scope="session")
def topic_pages() -> list[str]:
    """One page per topic (cooking, astronomy, football, networking, forest, finance)."""
    return list(TOPIC_PAGES)


@pytest.fixture(scope="session")
def page_texts() -> list[str]:
    rng = random.Random(1234)
    return [page_text(n, rng) for n in range(1, 13)]


@pytest.fixture(scope="session")
def text_pdf(page_texts: list[str]) -> bytes:
    return make_pdf(page_texts)


@pytest.fixture(scope="session")
def long_pdf() -> bytes:
    return make_pdf([f"Page {n} of the long file." for n in range(1, 121)])


@pytest.fixture(scope="session")
def topic_pdf() -> bytes:
    return make_pdf(TOPIC_PAGES)


@pytest.fixture(scope="session")
def pdf_factory() -> Callable[..., bytes]:
    return make_pdf


@pytest.fixture(scope="session")
def docx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document><w:body>Hello</w:body></w:document>")
    return buffer.getvalue()


# --- Django-side fixtures for the job, the pages and the seam --------------------------------------------


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """Uploads go to a per-test folder (broker tests keep the shared MEDIA_ROOT the worker reads)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def hashing(settings: Any) -> None:
    settings.DOCUMENTS_EMBEDDER = "hashing"


@pytest.fixture(autouse=True)
def fresh_search_cache() -> Iterator[None]:
    from example.documents import search

    search.invalidate()
    yield
    search.invalidate()


@pytest.fixture
def make_document() -> Callable[..., Any]:
    """Save ``data`` as an uploaded file and return its pending Document (no processing started)."""
    from django.core.files.base import ContentFile

    from example.documents.models import Document

    def make(data: bytes, name: str = "report.pdf", content_type: str = "", title: str = "") -> Document:
        document = Document(
            title=title or Path(name).stem,
            original_name=name,
            content_type=content_type,
            size=len(data),
        )
        document.file.save(name, ContentFile(data), save=False)
        document.save()
        return document

    return make


def make_huge_page_tree_pdf(fanout: int = 100, levels: int = 3) -> bytes:
    """A 3 KB PDF whose page tree claims ``fanout ** levels`` pages (a million by default).

    Each level's ``/Kids`` repeats one child, so the file stays tiny while PDFium counts (and would
    read) every leaf: the attacker's "17 KB PDF with 1,000,000 pages".
    """
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    page_id = 2 + levels
    content_id, font_id = page_id + 1, page_id + 2
    for level in range(levels):
        oid = 2 + level
        kids = b" ".join([f"{oid + 1} 0 R".encode()] * fanout)
        parent = b"" if level == 0 else f" /Parent {oid - 1} 0 R".encode()
        count = str(fanout ** (levels - level)).encode()
        objects[oid] = b"<< /Type /Pages /Kids [" + kids + b"] /Count " + count + parent + b" >>"
    objects[page_id] = (
        f"<< /Type /Page /Parent {page_id - 1} 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
        f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>"
    ).encode()
    stream = b"BT /F1 12 Tf 72 720 Td (One page of a very long report, repeated.) Tj ET"
    objects[content_id] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    objects[font_id] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for oid in sorted(objects):
        offsets[oid] = len(out)
        out += f"{oid} 0 obj\n".encode() + objects[oid] + b"\nendobj\n"
    xref, size = len(out), max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offsets[oid]:010d} 00000 n \n".encode() for oid in range(1, size))
    out += f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture(scope="session")
def million_page_pdf() -> bytes:
    return make_huge_page_tree_pdf()
