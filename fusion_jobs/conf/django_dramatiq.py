"""The broker URL of a django-dramatiq project, so switching to fusion-jobs needs no second URL."""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings as django_settings

#: django-dramatiq's ``DRAMATIQ_BROKER["BROKER"]`` values that are RabbitMQ (its default included).
RABBITMQ_BROKERS = ("dramatiq.brokers.rabbitmq.RabbitmqBroker", "dramatiq.brokers.rabbitmq.RabbitMQBroker")


def dramatiq_broker_url() -> tuple[str, str | None]:
    """The RabbitMQ URL of django-dramatiq's ``DRAMATIQ_BROKER`` setting, and why there is none.

    Read only while ``FUSION_JOBS_BROKER_URL`` is unset, so a django-dramatiq project switches
    without repeating its URL. ``OPTIONS["url"]`` is used as is; pika's ``host``/``port``/
    ``virtual_host``/``credentials`` options are turned into a URL. Returns ``("", problem)`` for
    a broker fusion-jobs cannot run on (Redis, stub), ``("", None)`` when the setting is absent.
    """
    config = getattr(django_settings, "DRAMATIQ_BROKER", None)
    if config is None:
        return "", None
    if not isinstance(config, dict):
        return "", f"DRAMATIQ_BROKER is a {type(config).__name__}, not a dict"
    path = config.get("BROKER", RABBITMQ_BROKERS[0])
    if path not in RABBITMQ_BROKERS:
        return "", f"DRAMATIQ_BROKER['BROKER'] is {str(path)[:200]!r}: fusion-jobs runs on RabbitMQ only"
    options = config.get("OPTIONS") or {}
    if not isinstance(options, dict):
        return "", "DRAMATIQ_BROKER['OPTIONS'] is not a dict"
    url = options.get("url")
    if isinstance(url, str) and url:
        return url, None
    if url:
        return "", "DRAMATIQ_BROKER['OPTIONS']['url'] is not a single URL string"
    for name in (
        "ssl_options",
        "parameters",
    ):  # TLS, a cluster: dropping them changes where and how we connect
        if options.get(name):
            return "", (
                f"DRAMATIQ_BROKER['OPTIONS'] sets {name!r}, which no broker URL carries over: "
                "set FUSION_JOBS_BROKER_URL (amqps:// for TLS)"
            )
    host = options.get("host") or "127.0.0.1"
    credentials = options.get("credentials")
    user = str(getattr(credentials, "username", "guest"))
    password = str(getattr(credentials, "password", "guest"))
    vhost = str(options.get("virtual_host") or "/")
    return (
        f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{int(options.get('port') or 5672)}"
        f"/{quote(vhost, safe='')}",
        None,
    )
