"""Logging for the long-running commands, with the broker password scrubbed from every record."""

from __future__ import annotations

import logging

from .conf import jobs_settings
from .tracing import RunIdFilter
from .utils import scrub


class ScrubPasswordFilter(logging.Filter):
    """Replaces the broker password in the formatted message (pika and Dramatiq may echo URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        url = str(jobs_settings.BROKER_URL or "")
        if url:
            message = record.getMessage()
            clean = scrub(message, url)
            if clean != message:
                record.msg, record.args = clean, ()
        return True


def configure_worker_logging(level: int = logging.INFO, *, add_handler: bool = True) -> None:
    root = logging.getLogger()
    if add_handler and not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(
            logging.Formatter(
                "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"
            )
        )
        root.addHandler(stream)
        root.setLevel(level)
    for handler in root.handlers:
        if not any(isinstance(f, ScrubPasswordFilter) for f in handler.filters):
            handler.addFilter(ScrubPasswordFilter())
        if not any(isinstance(f, RunIdFilter) for f in handler.filters):
            handler.addFilter(RunIdFilter())  # record.run_id for structured formatters
    logging.getLogger("pika").setLevel(logging.WARNING)
