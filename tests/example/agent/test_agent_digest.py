"""The daily briefing: the day's events per user, queued once, nothing for quiet users."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from example.agent import delivery, digest, ticks
from example.agent.models import Memory, MessageKind, MessageStatus, OutboundMessage
from example.documents.models import DocumentStatus

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def test_the_briefing_lists_the_days_documents_notifications_and_observations(
    t0: datetime, make_user, make_document, make_state
) -> None:
    ada = make_user("ada")
    make_state(t0 - 20 * HOUR)
    make_document(ada, title="Quarterly report", processed_at=t0 - 10 * HOUR, page_count=12)
    make_document(
        ada, title="scan.pdf", status=DocumentStatus.FAILED, error="no text layer", processed_at=t0 - 9 * HOUR
    )
    make_document(ada, title="Last week's minutes", processed_at=t0 - 30 * HOUR)  # before the day
    ticks.run_tick(now=t0 - 8 * HOUR)  # notices both and queues two notifications
    Memory.objects.create(user=ada, text="Ada uploads on Mondays", created_at=t0 - HOUR)

    result = digest.queue_digests(now=t0)

    assert result["queued"] == 1
    briefing = OutboundMessage.objects.get(kind=MessageKind.DIGEST)
    assert (briefing.to, briefing.status, briefing.user) == ("ada@example.test", MessageStatus.PENDING, ada)
    assert briefing.subject == f"Your daily briefing for {t0:%Y-%m-%d}"
    body = briefing.body
    assert body.startswith("Good morning ada,")
    assert "Documents processed (1):\n  - Quarterly report (12 pages)" in body
    assert "Documents that failed (1):\n  - scan.pdf: no text layer" in body
    assert "Notifications (2):" in body
    assert 'Your document "Quarterly report" is ready [pending]' in body
    assert "What I noticed (3):" in body
    assert "Ada uploads on Mondays" in body
    assert "Last week's minutes" not in body


def test_quiet_users_get_nothing_and_a_second_run_queues_nothing_twice(
    t0: datetime, make_user, make_document
) -> None:
    busy, quiet = make_user(), make_user()
    make_user(email=None)  # no address: never a briefing
    make_document(busy, processed_at=t0 - HOUR)

    first = digest.queue_digests(now=t0)
    second = digest.queue_digests(now=t0 + HOUR)

    assert (first["queued"], first["nothing_to_report"]) == (1, 1)
    assert (second["queued"], second["already_queued"]) == (0, 1)
    assert OutboundMessage.objects.filter(kind=MessageKind.DIGEST).count() == 1
    assert not OutboundMessage.objects.filter(user=quiet).exists()


def test_the_briefing_goes_out_through_the_outbox(t0: datetime, make_user, make_document, smtp_on) -> None:
    from django.core import mail

    make_document(make_user("grace"), title="Thesis", processed_at=t0 - HOUR)
    digest.queue_digests(now=t0)

    assert delivery.deliver_due(now=t0)["sent"] == 1
    assert mail.outbox[0].subject == f"Your daily briefing for {t0:%Y-%m-%d}"
    assert "Thesis" in mail.outbox[0].body
