"""Dramatiq with django-dramatiq's ``AdminMiddleware``: a ``Task`` row written on enqueue, start and finish.

The broker is built from ``settings.DRAMATIQ_BROKER`` (see ``bench/settings.py``) with
django-dramatiq's own middleware loader, as a django-dramatiq project configures it.
Worker: ``python -m dramatiq bench.peers.dd_admin:broker -p 2 -t 8 -Q bench_dd``.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

import dramatiq  # noqa: E402
from django.conf import settings  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402
from django_dramatiq.utils import load_middleware  # noqa: E402

from bench.sidechannel import mark  # noqa: E402

QUEUE = "bench_dd"
ACTOR = "bench_dd_noop"


def noop(p: str = "d") -> None:
    mark(p)


def build(*, admin: bool = True) -> tuple[dramatiq.Broker, dramatiq.Actor]:
    """The configured broker and the no-op actor; ``admin=False`` leaves AdminMiddleware out (preloading)."""
    conf = settings.DRAMATIQ_BROKER
    middleware = [
        load_middleware(path) for path in conf["MIDDLEWARE"] if admin or not path.endswith(".AdminMiddleware")
    ]
    built = import_string(conf["BROKER"])(middleware=middleware, **conf["OPTIONS"])
    return built, dramatiq.actor(noop, actor_name=ACTOR, queue_name=QUEUE, broker=built)


broker, actor = build()
