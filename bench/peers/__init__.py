"""The peers fusion-jobs is compared with: bare Dramatiq, django-dramatiq's AdminMiddleware, Celery 5."""

import os

BROKER_URL = os.environ.get("FJ_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/fj_perf")
