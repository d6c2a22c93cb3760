"""Server-rendered SVG charts for the dashboard: no JavaScript, no CDN, every text escaped.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>``, labelled axes, and one
``<title>`` tooltip per bar or point giving its exact numbers; the dashboard also shows the same
numbers in a table. All markup goes through ``format_html``/``format_html_join`` or the frame's
auto-escaping template, so a task name like ``<script>`` is text in the chart, never markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 500, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 10, 22, 44
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
X_LABELS = 6
FRAME_TEMPLATE = "admin/fusion_jobs/chart.html"


@dataclass
class Series:
    name: str
    colour: str
    values: Sequence[float | None]
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is >= ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def nice_scale(value: float, *, integer: bool = False) -> tuple[float, float]:
    """An axis top and tick step for values up to ``value``: a 1, 2 or 5 step, at most 5 intervals."""
    if value <= 0:
        return (4.0, 1.0) if integer else (1.0, 0.25)
    raw = value / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(math.ceil(step)))
    return math.ceil(value / step - 1e-9) * step, step


def _x(index: int, count: int) -> float:
    return LEFT + (index + 0.5) * PLOT_W / max(count, 1)


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H - (value / top) * PLOT_H


def _frame(
    chart_id: str,
    title: str,
    description: str,
    y_label: str,
    x_label: str,
    labels: Sequence[str],
    top: float,
    step: float,
    fmt: Callable[[float], str],
    body: SafeString,
    legend: Sequence[Series],
) -> SafeString:
    levels = [step * i for i in range(round(top / step) + 1)]
    ticks = format_html_join(
        "",
        '<line class="fj-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="fj-tick" x="{}" y="{}" text-anchor="end">{}</text>',
        (
            (
                LEFT,
                LEFT + PLOT_W,
                f"{_y(level, top):.1f}",
                f"{_y(level, top):.1f}",
                LEFT - 6,
                f"{_y(level, top) + 4:.1f}",
                fmt(level),
            )
            for level in levels
        ),
    )
    every = max(1, math.ceil(len(labels) / X_LABELS))
    x_ticks = format_html_join(
        "",
        '<text class="fj-tick" x="{}" y="{}" text-anchor="middle">{}</text>',
        (
            (f"{_x(i, len(labels)):.1f}", TOP + PLOT_H + 18, label)
            for i, label in enumerate(labels)
            if i % every == 0
        ),
    )
    keys = format_html_join(
        "",
        '<g class="fj-key"><rect x="{}" y="4" width="10" height="10" fill="{}"/>'
        '<text class="fj-tick" x="{}" y="13">{}</text></g>',
        ((LEFT + 8 + i * 135, s.colour, LEFT + 22 + i * 135, s.name) for i, s in enumerate(legend)),
    )
    # The frame is a template (admin/fusion_jobs/chart.html); every number is formatted here.
    context = {
        "id": chart_id,
        "width": WIDTH,
        "height": HEIGHT,
        "title": title,
        "description": description,
        "y_ticks": ticks,
        "x_ticks": x_ticks,
        "left": LEFT,
        "right": LEFT + PLOT_W,
        "top": TOP,
        "bottom": TOP + PLOT_H,
        "body": body,
        "keys": keys,
        "x_centre": LEFT + PLOT_W / 2,
        "x_label_y": HEIGHT - 6,
        "x_label": x_label,
        "y_centre": TOP + PLOT_H / 2,
        "y_label": y_label,
    }
    return render_to_string(FRAME_TEMPLATE, {k: _text(v) for k, v in context.items()})


def _text(value: object) -> object:
    """Numbers as Python prints them (``274.0``), never localised; markup and text as they are."""
    return str(value) if isinstance(value, int | float) else value


def stacked_bars(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    x_label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> SafeString:
    """One bar per label, the series stacked bottom to top; each segment's tooltip gives its count."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top, step = nice_scale(max(totals, default=0), integer=True)
    width = max(1.0, PLOT_W / max(len(labels), 1) * 0.8)
    parts = []
    for i, label in enumerate(labels):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if not value:
                continue
            y0, y1 = _y(base, top), _y(base + value, top)
            parts.append(
                format_html(
                    '<rect class="fj-bar" x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}: {} {}</title></rect>",
                    f"{_x(i, len(labels)) - width / 2:.1f}",
                    f"{y1:.1f}",
                    f"{width:.1f}",
                    f"{max(y0 - y1, 0.5):.1f}",
                    s.colour,
                    label,
                    fmt(value),
                    s.name,
                )
            )
            base += value
    body = format_html_join("", "{}", ((part,) for part in parts))
    return _frame(chart_id, title, description, y_label, x_label, labels, top, step, fmt, body, series)


def lines(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    x_label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    top: float | None = None,
) -> SafeString:
    """One line per series, broken where a value is missing.

    Each bucket with a value has one transparent full-height strip whose tooltip gives every
    series' value there (one element per bucket, not one per point: a week has 168 buckets).
    Points are drawn where a value stands alone, and everywhere on sparse charts.
    """
    values = [v for s in series for v in s.values if v is not None]
    top, step = (top, top / 4) if top else nice_scale(max(values, default=0))
    count = len(labels)
    dots = count <= 60
    parts = []
    for s in series:
        segment: list[str] = []
        segments = [segment]
        for i, value in enumerate(s.values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{_x(i, count):.1f},{_y(min(value, top), top):.1f}")
        for points in segments:
            if len(points) > 1:
                parts.append(
                    format_html(
                        '<polyline class="fj-line" points="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}"/>',
                        " ".join(points),
                        s.colour,
                        "5 3" if s.dashed else "none",
                    )
                )
            parts.extend(
                format_html(
                    '<circle class="fj-point" cx="{}" cy="{}" r="2.5" fill="{}"/>',
                    *point.split(","),
                    s.colour,
                )
                for point in points
                if dots or len(points) == 1
            )
    width = PLOT_W / max(count, 1)
    for i, label in enumerate(labels):
        shown = [(s.name, fmt(v)) for s in series if (v := s.values[i]) is not None]
        if shown:
            parts.append(
                format_html(
                    '<rect class="fj-hit" x="{}" y="{}" width="{}" height="{}" fill="transparent">'
                    "<title>{}: {}</title></rect>",
                    f"{LEFT + i * width:.1f}",
                    TOP,
                    f"{width:.1f}",
                    PLOT_H,
                    label,
                    ", ".join(f"{name} {value}" for name, value in shown),
                )
            )
    body = format_html_join("", "{}", ((part,) for part in parts))
    return _frame(chart_id, title, description, y_label, x_label, labels, top, step, fmt, body, series)
