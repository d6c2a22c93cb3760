"""The same project after the switch (README "Coming from django-dramatiq", step 1).

``fusion_jobs`` comes before ``django_dramatiq``, so its ``rundramatiq`` is the one that runs;
no ``FUSION_JOBS_BROKER_URL``: the RabbitMQ URL of ``DRAMATIQ_BROKER`` is used.
"""

from __future__ import annotations

import os

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = ["fusion_jobs", *INSTALLED_APPS]

if "DJD_FUSION_BROKER_URL" in os.environ:  # a test sets it ('' = jobs inline)
    FUSION_JOBS_BROKER_URL = os.environ["DJD_FUSION_BROKER_URL"]
FUSION_JOBS_RETRY_MIN_BACKOFF = 0.2
FUSION_JOBS_RETRY_MAX_BACKOFF = 0.5
