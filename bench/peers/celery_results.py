"""Celery 5 with django-celery-results, set up as its Django guide shows (settings under ``CELERY_``).

``CELERY_RESULT_BACKEND = "django-db"``, ``task_track_started`` and ``result_extended`` on (see
``bench/settings.py``), so every run leaves a ``TaskResult`` row: written STARTED, then SUCCESS.
``FJ_BENCH_CELERY_DB_REUSE_MAX`` sets ``CELERY_DB_REUSE_MAX``, the documented tuning of Celery's
Django fixup, which otherwise closes the database connection after every task.
Worker: ``python -m celery -A bench.peers.celery_results worker -P threads -c 8 -Q bench_celery_results``.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.sidechannel import mark

QUEUE = "bench_celery_results"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
app = Celery("fj_bench_results")
app.config_from_object("django.conf:settings", namespace="CELERY")
if reuse := os.environ.get("FJ_BENCH_CELERY_DB_REUSE_MAX"):
    app.conf.update(CELERY_DB_REUSE_MAX=int(reuse))


@app.task(name="bench.celery_results_noop")
def noop(p: str = "d") -> None:
    mark(p)
