"""Medians over the repetitions, same-run ratios (fusion-jobs ÷ peer), and the targets, met or missed.

A repetition's results are nested dicts keyed by peer (``rep["results"]["procrastinate"]["drain"]
["rate"]``); every numeric leaf becomes a dotted figure (``procrastinate.drain.rate``) with its
median and min–max spread. A ratio is the median of the per-repetition ratios, so every peer in
it saw the same machine weather.
"""

# ruff: noqa: RUF001, RUF002  (the multiplication, division and dash signs are meant)
from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.compare.peer import Peer

FJ = "fusion_jobs"
Rep = dict[str, Any]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def figure(name: str) -> Callable[[Rep], float | None]:
    return lambda rep: flatten(rep["results"]).get(name)


def fastest_tracked_drain(peers: list[Peer]) -> Callable[[Rep], float | None]:
    keys = [p.key for p in peers if p.tracked and p.key != FJ]

    def best(rep: Rep) -> float | None:
        rates = [rep["results"].get(k, {}).get("drain", {}).get("rate") for k in keys]
        return max((r for r in rates if r), default=None)

    return best


def ratio(
    a: Callable[[Rep], float | None], b: Callable[[Rep], float | None]
) -> Callable[[Rep], float | None]:
    def value(rep: Rep) -> float | None:
        x, y = a(rep), b(rep)
        return x / y if x is not None and y else None

    return value


def median_of(reps: list[Rep], getter: Callable[[Rep], float | None]) -> float | None:
    values = [v for v in (getter(rep) for rep in reps) if v is not None]
    return statistics.median(values) if values else None


def ratios(peers: list[Peer], keys: list[str]) -> dict[str, Callable[[Rep], float | None]]:
    """fusion-jobs ÷ each other entry: enqueue and drain rates (higher is better), enqueue→start p50."""
    out = {}
    for key in keys:
        if key == FJ:
            continue
        out[f"enqueue.{key}"] = ratio(figure(f"{FJ}.enqueue.rate"), figure(f"{key}.enqueue.rate"))
        out[f"drain.{key}"] = ratio(figure(f"{FJ}.drain.rate"), figure(f"{key}.drain.rate"))
        out[f"latency.{key}"] = ratio(figure(f"{FJ}.latency.p50_ms"), figure(f"{key}.latency.p50_ms"))
        out[f"batch1000.{key}"] = ratio(figure(f"{FJ}.batch.1000.rate"), figure(f"{key}.batch.1000.rate"))
    out["drain.fastest_tracked"] = ratio(figure(f"{FJ}.drain.rate"), fastest_tracked_drain(peers))
    out["drain.celery_best"] = ratio(
        figure(f"{FJ}.drain.rate"),
        lambda rep: max(
            (
                r
                for r in (figure("celery_prefork.drain.rate")(rep), figure("celery_threads.drain.rate")(rep))
                if r
            ),
            default=None,
        ),
    )
    return out


#: (name, figure or ratio, comparison, goal, unit); issue 18's targets first.
TARGETS = (
    ("enqueue() ÷ procrastinate defer, runs/s", "ratio:enqueue.procrastinate", ">=", 1.2, "×"),
    ("enqueue() p50", "median:fusion_jobs.enqueue.p50_ms", "<=", 0.6, "ms"),
    ("enqueue_many(1000) ÷ batch_defer(1000), runs/s", "ratio:batch1000.procrastinate", ">=", 1.0, "×"),
    ("drain ÷ fastest tracked peer", "ratio:drain.fastest_tracked", ">=", 3.0, "×"),
    ("drain ÷ bare Dramatiq", "ratio:drain.dramatiq", ">=", 0.6, "×"),
    ("drain ÷ django-dramatiq AdminMiddleware", "ratio:drain.dd_admin", ">=", 5.0, "×"),
    ("drain ÷ bare Celery (faster pool)", "ratio:drain.celery_best", ">=", 1.5, "×"),
    ("enqueue→start p50 ÷ bare Dramatiq (confirms on)", "ratio:latency.dramatiq", "<=", 1.5, "×"),
    ("inline overhead over a direct call, SQLite", "median:inline.sqlite.overhead_us", "<", 500.0, "µs"),
    (
        "inline overhead over a direct call, PostgreSQL",
        "median:inline.postgres.overhead_us",
        "<",
        500.0,
        "µs",
    ),
)


def judge(value: float | None, op: str, goal: float) -> bool | None:
    if value is None:
        return None
    return value >= goal if op == ">=" else value <= goal if op == "<=" else value < goal


def summarize(reps: list[Rep], inline: dict[str, Any], peers: list[Peer]) -> dict[str, Any]:
    names = sorted({name for rep in reps for name in flatten(rep["results"])})
    keys = list(dict.fromkeys(key for rep in reps for key in rep["results"]))
    m: dict[str, Any] = {"median": {}, "spread": {}, "ratio": {}}
    for name in names:
        values = [v for v in (figure(name)(rep) for rep in reps) if v is not None]
        m["median"][name] = statistics.median(values) if values else None
        m["spread"][name] = [min(values), max(values)] if values else None
    for name, getter in ratios(peers, keys).items():
        m["ratio"][name] = median_of(reps, getter)
    for db, data in inline.items():
        for key in ("direct_us", "enqueue_us", "enqueue_p50_us", "overhead_us"):
            m["median"][f"inline.{db}.{key}"] = statistics.median(r[key] for r in data["reps"])
    m["targets"] = []
    for label, source, op, goal, unit in TARGETS:
        kind, name = source.split(":", 1)
        value = m[kind].get(name)
        m["targets"].append(
            {
                "target": label,
                "value": value,
                "op": op,
                "goal": goal,
                "unit": unit,
                "met": judge(value, op, goal),
            }
        )
    return m
