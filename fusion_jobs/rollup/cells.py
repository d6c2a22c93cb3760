"""The mergeable numbers of a bucket: a task's runs counted by outcome, and log-bin distributions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..models import EXECUTED_STATUSES, FAILED_STATUSES, TERMINAL_STATUSES, RunStatus

#: The ended statuses a bucket counts (one ``RunRollup`` column each), in ``RunStatus`` order.
OUTCOMES: tuple[str, ...] = tuple(status.value for status in RunStatus if status in TERMINAL_STATUSES)
#: Histogram bins: bin 0 is [0, 1 ms); bin k >= 1 is [1 ms * F**(k-1), 1 ms * F**k); the last is open.
HIST_BASE = 0.001
HIST_FACTOR = 2**0.25
HIST_BINS = 120  # up to ~ 1.15e6 s (13 days)
_LOG_FACTOR = math.log(HIST_FACTOR)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hist_bin(seconds: float) -> int:
    if seconds < HIST_BASE:
        return 0
    return min(HIST_BINS - 1, 1 + int(math.log(seconds / HIST_BASE) / _LOG_FACTOR))


def bin_bounds(index: int) -> tuple[float, float]:
    if index == 0:
        return 0.0, HIST_BASE
    return HIST_BASE * HIST_FACTOR ** (index - 1), HIST_BASE * HIST_FACTOR**index


def floor_time(moment: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long bucket holding ``moment`` (buckets aligned on the epoch, UTC)."""
    offset = int((moment - _EPOCH).total_seconds() // seconds) * seconds
    return _EPOCH + timedelta(seconds=offset)


@dataclass
class Dist:
    """A mergeable distribution: count, sum, min, max and a sparse log-bin histogram."""

    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    hist: dict[int, int] = field(default_factory=dict)
    _percentiles: dict[tuple[float, int], float] = field(default_factory=dict, repr=False, compare=False)

    def add(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.count += 1
        self.total += seconds
        self.low = seconds if self.low is None else min(self.low, seconds)
        self.high = seconds if self.high is None else max(self.high, seconds)
        index = hist_bin(seconds)
        self.hist[index] = self.hist.get(index, 0) + 1

    def merge(self, other: Dist) -> None:
        if not other.count:
            return
        self.count += other.count
        self.total += other.total
        self.low = other.low if self.low is None else min(self.low, other.low or 0.0)
        self.high = other.high if self.high is None else max(self.high, other.high or 0.0)
        for index, n in other.hist.items():
            self.hist[index] = self.hist.get(index, 0) + n

    def percentile(self, fraction: float) -> float | None:
        """The value below which ``fraction`` of the values lie, interpolated inside its log bin."""
        if not self.count:
            return None
        key = (fraction, self.count)
        if key not in self._percentiles:  # a chart and its table ask for the same ones
            self._percentiles[key] = self._percentile(fraction)
        return self._percentiles[key]

    def _percentile(self, fraction: float) -> float:
        rank = fraction * self.count
        seen = 0
        for index in sorted(self.hist):
            n = self.hist[index]
            if seen + n >= rank:
                low, high = bin_bounds(index)
                share = (rank - seen) / n if n else 0.0
                value = low + (high - low) * share if index == 0 else low * (high / low) ** share
                break
            seen += n
        else:
            value = self.high or 0.0
        return min(max(value, self.low or 0.0), self.high if self.high is not None else value)


@dataclass
class Cell:
    """Runs of one task that ended in one bucket."""

    counts: dict[str, int] = field(default_factory=dict)
    duration: Dist = field(default_factory=Dist)
    wait: Dist = field(default_factory=Dist)

    def merge(self, other: Cell) -> None:
        for outcome, n in other.counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + n
        self.duration.merge(other.duration)
        self.wait.merge(other.wait)

    @property
    def executed(self) -> int:
        return sum(self.counts.get(o, 0) for o in EXECUTED_STATUSES)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(o, 0) for o in FAILED_STATUSES)

    @property
    def ended(self) -> int:
        return sum(self.counts.values())

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.executed if self.executed else None


Cells = dict[tuple[datetime, str], Cell]


def merge_cells(cells: Cells, part: Cells) -> None:
    """Add ``part``'s cells into ``cells`` (a cell of ``part`` may be taken over, not copied)."""
    for key, cell in part.items():
        existing = cells.get(key)
        if existing is None:
            cells[key] = cell
        else:
            existing.merge(cell)
