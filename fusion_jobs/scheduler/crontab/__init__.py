"""Five-field crontab expressions: strict parsing (``expression``), and ticks placed on the time
line in an IANA zone (``zoned``). Imports only the standard library: ``import fusion_jobs`` stays light."""

from __future__ import annotations

from .expression import (
    DAY_NAMES,
    FIELDS,
    MACROS,
    MONTH_NAMES,
    SEARCH_YEARS,
    CronExpression,
    normalise_expression,
    parse,
)
from .zoned import HOST_ZONES, ZonedCron, get_zone, next_fire_times

__all__ = [
    "DAY_NAMES",
    "FIELDS",
    "HOST_ZONES",
    "MACROS",
    "MONTH_NAMES",
    "SEARCH_YEARS",
    "CronExpression",
    "ZonedCron",
    "get_zone",
    "next_fire_times",
    "normalise_expression",
    "parse",
]
