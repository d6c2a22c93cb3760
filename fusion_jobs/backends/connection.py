"""Connections to the configured RabbitMQ: bounded connect parameters, and a refusal said plainly.

Shared by the broker's publishers and consumers and by the commands that open a connection of
their own (``rundramatiq``'s login check, ``jobsstatus``, ``migratequeues``).
"""

from __future__ import annotations

import pika

from ..conf import jobs_settings
from ..utils import mask_url


def connection_parameters(url: str) -> pika.URLParameters:
    """pika's parameters for ``url``: one connect attempt, bounded waits, heartbeats on."""
    params = pika.URLParameters(url)
    timeout = float(jobs_settings.PUBLISH_TIMEOUT)
    # Fail fast instead of hanging a web request: one connect attempt, bounded socket and
    # blocked-connection (resource alarm) waits. Heartbeats keep idle publishers (runcrons) alive.
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = timeout
    params.stack_timeout = timeout * 2
    params.blocked_connection_timeout = timeout
    if params.heartbeat is None:
        params.heartbeat = 30
    return params


def open_connection() -> pika.BlockingConnection:
    """One connection to the configured broker, with the bounded connect of publishing.

    ``rundramatiq`` opens one before it starts consuming, so a refused login is one clear line
    (:func:`describe_refusal`) instead of consumers logging connection errors in a loop.
    """
    return pika.BlockingConnection(connection_parameters(str(jobs_settings.BROKER_URL or "")))


def describe_refusal(exc: BaseException) -> str:
    """Why RabbitMQ refused a connection, with the URL's password masked."""
    url = mask_url(str(jobs_settings.BROKER_URL or ""))
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return (
            f"RabbitMQ at {url} refused access to the vhost (it does not exist, or the user has no "
            "permission on it)"
        )
    return f"RabbitMQ at {url} refused the login (wrong user or password)"
