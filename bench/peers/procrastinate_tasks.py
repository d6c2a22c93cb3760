"""procrastinate through its Django contrib: the no-op task (``PROCRASTINATE_IMPORT_PATHS`` in bench.settings).

Worker: ``manage.py procrastinate worker --concurrency 8 --queues bench_pc``, two processes.
"""

from __future__ import annotations

from procrastinate.contrib.django import app

from bench.sidechannel import mark

QUEUE = "bench_pc"


@app.task(name="bench_pc_noop", queue=QUEUE)
def noop(p: str = "d") -> None:
    mark(p)
