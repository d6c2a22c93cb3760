"""Imported by each Dramatiq worker process: set up Django, then build the broker with every task.

Not for import anywhere else: it calls ``django.setup()``. The settings are the project's: the
worker inherits ``DJANGO_SETTINGS_MODULE`` from the ``manage.py rundramatiq`` that started it.
"""

from __future__ import annotations

import logging
import os

import django

django.setup()

from fusion_jobs.backends.broker import get_broker  # noqa: E402
from fusion_jobs.logs import configure_worker_logging  # noqa: E402

# rundramatiq --skip-logging (django-dramatiq's option): Django's LOGGING only, no handler of ours.
configure_worker_logging(add_handler=not os.environ.get("FUSION_JOBS_WORKER_SKIP_LOGGING"))
broker = get_broker()
logging.getLogger("fusion_jobs.worker").info(
    "worker process %s ready: %d task(s) on queue(s) %s",
    os.getpid(),
    len(broker.actors),
    ", ".join(sorted(broker.get_declared_queues())),
)
