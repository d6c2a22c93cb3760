"""A per-user rate limit on the cache: a fixed window of ``count`` hits per ``seconds``.

Good enough for the example's two expensive actions (enqueue a demo job, upload a document). With the
default local-memory cache each web process counts on its own, so N processes allow up to N times the
limit; point ``CACHES`` at a shared cache (Redis, the database) to make it exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"10/60"``: ten per minute. ``"0/60"`` turns the action off."""
        try:
            count, seconds = (int(part) for part in text.split("/"))
        except ValueError:
            raise ImproperlyConfigured(
                f"a rate limit is 'count/seconds', e.g. '10/60', not {text!r}"
            ) from None
        if count < 0 or seconds <= 0:
            raise ImproperlyConfigured(f"a rate limit needs count >= 0 and seconds > 0, not {text!r}")
        return cls(count, seconds)


def hit(scope: str, who: str, rate: Rate) -> int:
    """Count one hit for ``who`` in ``scope``; return 0 when allowed, else the seconds until the next window."""
    now = int(time.time())
    window = now // rate.seconds
    key = f"example:ratelimit:{scope}:{who}:{window}"
    cache.add(key, 0, timeout=rate.seconds + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=rate.seconds + 1)
        used = 1
    if used <= rate.count:
        return 0
    return max(1, (window + 1) * rate.seconds - now)
