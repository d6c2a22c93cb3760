"""tests/unit: no database, no broker. A test here that reaches for either fails, saying where it belongs.

The guard is stricter than pytest-django's (which tells you to add a ``django_db`` mark): here the
answer is to move the test to tests/integration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.backends.base.base import BaseDatabaseWrapper

#: Fixtures that need PostgreSQL or RabbitMQ (pytest-django's database fixtures and tests/conftest.py's).
SERVICE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_setup",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
        "admin_user",
        "admin_client",
        "test_db_name",
        "broker_settings",
        "worker",
        "make_worker",
    }
)
MOVE = "tests/unit needs no database and no broker: move this test to tests/integration"


def pytest_runtest_setup(item: pytest.Item) -> None:
    wanted = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    marks = [name for name in ("django_db", "broker") if item.get_closest_marker(name)]
    if wanted or marks:
        pytest.fail(f"{MOVE} (it asks for {', '.join(sorted(wanted) + marks)})", pytrace=False)


@pytest.fixture(autouse=True)
def _no_services(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any database connection or TCP connection from the test process fails at once."""

    def no_database(self: Any, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{MOVE} (it opened a database connection)")

    real_connect = socket.socket.connect

    def no_network(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"{MOVE} (it connected to {address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", no_database)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    yield
