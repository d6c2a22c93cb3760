"""Settings of the example's tests (``pytest --ds=tests.example.settings tests/example``): the
example's own settings, on the test database and with the tests' fast password hashing and embedder."""

from __future__ import annotations

import os

from example.settings import *  # noqa: F403
from tests.settings import DATABASES, PASSWORD_HASHERS  # noqa: F401

SECRET_KEY = "tests-only-not-a-secret"  # example.settings has none with DEBUG off
SECURE_SSL_REDIRECT = False  # the test client speaks plain HTTP (production redirects to HTTPS)
# Worker subprocesses started by the tests pass their broker here; the test process starts inline.
FUSION_JOBS_BROKER_URL = os.environ.get("FUSION_JOBS_WORKER_BROKER_URL", "")
FUSION_JOBS_RETRY_MIN_BACKOFF = 0.2
FUSION_JOBS_RETRY_MAX_BACKOFF = 1.0
MEDIA_ROOT = os.environ.get("FUSION_JOBS_TEST_MEDIA", "/tmp/fusion-jobs-test-media")
DOCUMENTS_EMBEDDER = "hashing"  # fast and deterministic; one test opts into WordLlama
