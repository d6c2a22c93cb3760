"""Search has a relevance floor: a nonsense query finds nothing instead of the ten least-bad chunks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from example.documents import retrieval
from example.documents.models import Document
from example.documents.processing import process_document

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

NONSENSE = ("xqzv blorft wibble", "asdkjh qwpoeiru zmxncb", "zzzz")


@pytest.mark.parametrize("embedder", ["auto", "hashing"])
def test_nonsense_queries_find_nothing_and_real_ones_still_do(
    make_document: Callable[..., Document], topic_pdf: bytes, settings: Any, embedder: str
) -> None:
    settings.DOCUMENTS_EMBEDDER = embedder
    process_document(make_document(topic_pdf, "topics.pdf").pk)

    for query in NONSENSE:
        assert retrieval.search_chunks(query).hits == [], query
    galaxy = retrieval.search_chunks("galaxy").hits  # a word of page 2
    assert galaxy and galaxy[0].chunk.page_start <= 2 <= galaxy[0].chunk.page_end


def test_the_floor_is_a_setting(
    make_document: Callable[..., Document], topic_pdf: bytes, settings: Any
) -> None:
    settings.DOCUMENTS_EMBEDDER = "hashing"
    process_document(make_document(topic_pdf, "topics.pdf").pk)

    settings.DOCUMENTS_SEARCH_MIN_SCORE = -1.0
    assert len(retrieval.search_chunks(NONSENSE[0]).hits) > 0  # no floor: the old behaviour
    settings.DOCUMENTS_SEARCH_MIN_SCORE = 0.15
    assert retrieval.search_chunks(NONSENSE[0]).hits == []


def test_the_search_page_says_nothing_is_close_enough(
    client: Client, make_document: Callable[..., Document], topic_pdf: bytes, settings: Any
) -> None:
    settings.DOCUMENTS_EMBEDDER = "hashing"
    process_document(make_document(topic_pdf, "topics.pdf").pk)

    html = client.get(reverse("documents:search"), {"q": NONSENSE[0]}).content.decode()

    assert f"No passage is close enough to “{NONSENSE[0]}”" in html
    assert 'class="doc-results"' not in html
