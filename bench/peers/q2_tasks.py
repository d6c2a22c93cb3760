"""django-q2 on its ORM broker: the no-op function ``async_task`` names (``Q_CLUSTER`` in bench.settings).

Worker: ``manage.py qcluster`` (two worker processes).
"""

from __future__ import annotations

from bench.sidechannel import mark

PATH = "bench.peers.q2_tasks.noop"


def noop(p: str = "d") -> None:
    mark(p)
