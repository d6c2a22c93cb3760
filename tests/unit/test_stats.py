"""The dashboard's arithmetic and wording, without a database."""

from __future__ import annotations

import pytest

from fusion_jobs.stats import format_duration, format_percent, percentile


@pytest.mark.parametrize(
    ("seconds", "short", "precise"),
    [
        (None, "-", "-"),
        (0.85, "850 ms", "850 ms"),
        (2.434, "2.4 s", "2.43 s"),
        (210, "3.5 min", "3 min 30 s"),
        (4320, "1.2 h", "1 h 12 min"),
    ],
)
def test_durations_read_short_on_charts_and_precise_in_the_table(seconds, short, precise) -> None:
    assert format_duration(seconds) == short
    assert format_duration(seconds, precise=True) == precise


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert percentile([], 0.5) is None and percentile([4.0], 0.95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert format_percent(None) == "-" and format_percent(0.25) == "25.0%"
