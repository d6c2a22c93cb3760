"""Plain Dramatiq actors, as a django-dramatiq project writes them."""

import time

import dramatiq

from .models import Note


@dramatiq.actor
def record(key, value=1):
    Note.objects.create(key=key, value=value)


@dramatiq.actor(max_retries=1, min_backoff=100, max_backoff=200)
def flaky(key):
    Note.objects.create(key=key)
    if key.startswith("fail"):
        raise RuntimeError(f"flaky failed for {key}")


@dramatiq.actor(max_retries=0, time_limit=1000)
def slow(seconds):
    time.sleep(seconds)
    Note.objects.create(key=f"slow-{seconds}")


@dramatiq.actor(queue_name="shop-reports", priority=10)
def report(name):
    Note.objects.create(key=f"report-{name}")


@dramatiq.actor(max_retries=0)
def linger(seconds):
    time.sleep(seconds)
