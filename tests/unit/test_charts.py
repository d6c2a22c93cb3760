"""The SVG charts, without a database: every text escaped, every number as Python prints it."""

from __future__ import annotations

from django.test import override_settings
from django.utils import translation

from fusion_jobs.charts import Series, lines, stacked_bars


def test_a_chart_escapes_its_texts_and_keeps_its_numbers_unlocalised() -> None:
    with override_settings(USE_THOUSAND_SEPARATOR=True), translation.override("de"):
        svg = stacked_bars(
            "fj-t",
            "<b>title</b>",
            "a & b",
            ["<i>"],
            [Series("<s>", "#fff", [1500])],
            y_label="y",
            x_label="x",
        )
    assert svg.startswith('<svg class="fj-chart" id="fj-t" viewBox="0 0 500 230"') and svg.endswith("</svg>")
    assert "<b>" not in svg and "&lt;b&gt;title&lt;/b&gt;" in svg and "a &amp; b" in svg
    assert "<i>" not in svg and "<s>" not in svg
    # The axis labels' centres: a dot, not a localised comma.
    assert '<text class="fj-axis-label" x="274.0" y="224"' in svg and "translate(14 104.0)" in svg


def test_a_line_breaks_where_a_value_is_missing() -> None:
    svg = lines(
        "fj-l",
        "t",
        "d",
        ["a", "b", "c", "d"],
        [Series("s", "#000", [1, 2, None, 3])],
        y_label="y",
        x_label="x",
    )
    assert svg.count("<polyline") == 1 and svg.count('class="fj-hit"') == 3
