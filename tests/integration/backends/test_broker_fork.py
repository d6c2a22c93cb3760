"""A forked process (gunicorn's workers, a multiprocessing pool) publishes on connections of its own."""

from __future__ import annotations

import os
import uuid

import pytest
from django.db import connections

from fusion_jobs.backends.broker import publish
from fusion_jobs.exceptions import PublishError
from fusion_jobs.registry import get_task
from tests.support.processes import wait_child

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def publish_some(count: int) -> int:
    """How many of ``count`` publishes failed."""
    failed = 0
    for _ in range(count):
        try:
            publish(get_task("t-record"), str(uuid.uuid4()), {"label": "fork"})
        except PublishError:
            failed += 1
    return failed


def test_a_forked_child_does_not_share_the_parents_publishing_connection(broker_settings: str) -> None:
    assert publish_some(1) == 0  # the parent's pool now holds an open connection
    connections.close_all()  # as a pre-fork server: the child must not share the test's database socket
    pid = os.fork()
    if pid == 0:  # the child: publish alongside the parent, then leave at once
        os._exit(min(publish_some(50), 100))
    failed = publish_some(50)
    code = wait_child(pid, 30, hung="the child's publishes hung")
    # On one shared socket each process reads the other's confirms and frames interleave.
    assert (failed, code) == (0, 0)
