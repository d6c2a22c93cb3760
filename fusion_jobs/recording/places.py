"""Where runs are recorded (the database alias) and by whom (this process, ``host:pid``)."""

from __future__ import annotations

import os
import socket

from django.db import router

from ..models import JobRun

_worker_id: str | None = None


def worker_id() -> str:
    """``host:pid`` of this process, recomputed after a fork (a child has a pid of its own)."""
    global _worker_id
    pid = os.getpid()
    if _worker_id is None or not _worker_id.endswith(f":{pid}"):
        _worker_id = f"{socket.gethostname()}:{pid}"
    return _worker_id


def db_alias() -> str:
    """The database the router sends writes of runs to."""
    return router.db_for_write(JobRun) or "default"
