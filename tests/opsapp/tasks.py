"""Tasks of the operating tests, on their own queue ``fj-ops`` (the session worker never takes them)."""

from __future__ import annotations

import functools
import os
import time

from django.db import connection

import fusion_jobs
from tests.opsapp import codeversion

QUEUE = "fj-ops"


@fusion_jobs.task(name="ops-hello", queue=QUEUE, execution_timeout="60s", max_retries=0)
def hello(sleep: float = 0.0) -> dict[str, object]:
    time.sleep(sleep)
    return {"pid": os.getpid(), "version": codeversion.VERSION}


@fusion_jobs.task(name="ops-fail", queue=QUEUE, execution_timeout="60s", max_retries=0)
def fail() -> None:
    raise RuntimeError("planned failure")


@functools.cache
def columns_seen_at_start() -> tuple[str, ...]:
    """The gadget table's columns as this process first saw them: the ported design's workers
    snapshot the schema once per process, so only a fresh process sees a column added later."""
    with connection.cursor() as cursor:
        return tuple(
            c.name for c in connection.introspection.get_table_description(cursor, "fj_opsapp_gadget")
        )


@fusion_jobs.task(name="ops-gadget-columns", queue=QUEUE, execution_timeout="60s", max_retries=0)
def gadget_columns(sleep: float = 0.0) -> dict[str, object]:
    columns = columns_seen_at_start()
    time.sleep(sleep)
    return {"pid": os.getpid(), "columns": list(columns)}
