"""The PNG chart: drain, enqueue and enqueue→start per peer, medians with min–max bars."""

# ruff: noqa: RUF001, RUF002  (the dash and arrow signs are meant)
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.compare.peer import Peer
from bench.compare.report import entries

COLORS = {"fj": "#2b6cb0", "broker": "#a0aec0", "celery": "#718096", "db": "#c05621"}


def bars(ax: Any, items: list[tuple[str, str, str]], m: dict[str, Any], title: str, unit: str) -> None:
    """One bar per (label, figure, family): the median, and the repetitions' min–max as an error bar."""
    med, spread = m["median"], m["spread"]
    items = [item for item in items if med.get(item[1]) is not None]
    values = [med[key] for _, key, _ in items]
    ranges = [spread.get(key) or [v, v] for v, (_, key, _) in zip(values, items, strict=True)]
    errs = [
        [v - r[0] for v, r in zip(values, ranges, strict=True)],
        [r[1] - v for v, r in zip(values, ranges, strict=True)],
    ]
    ax.bar(
        [label for label, _, _ in items], values, yerr=errs, capsize=3, color=[COLORS[f] for *_, f in items]
    )
    for index, value in enumerate(values):
        ax.text(
            index,
            value + errs[1][index],
            f"{value:,.{1 if unit == 'ms' else 0}f}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    ax.tick_params(axis="x", labelrotation=35, labelsize=7)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


def write(path: Path, m: dict[str, Any], peers: list[Peer], reps: int, machine: dict[str, Any]) -> None:
    family = {peer.key: peer.family for peer in peers}
    family.update({v.key: peer.family for peer in peers for v in peer.variants})
    rows = entries(peers)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.6))
    bars(
        axes[0],
        [(label, f"{key}.drain.rate", family[key]) for key, label in rows],
        m,
        "Drain, runs/s (higher is better)",
        "runs/s",
    )
    enqueue = [(label, f"{key}.enqueue.rate", family[key]) for key, label in rows]
    enqueue += [
        (f"{peer.label} batch({size})", f"{peer.key}.batch.{size}.rate", peer.family)
        for peer in peers
        if peer.send_batch is not None
        for size in (100, 1000)
    ]
    bars(axes[1], enqueue, m, "Enqueue from one thread, runs/s", "runs/s")
    bars(
        axes[2],
        [(label, f"{key}.latency.p50_ms", family[key]) for key, label in rows],
        m,
        "Enqueue → task start, p50",
        "ms",
    )
    axes[2].set_yscale("log")
    fig.suptitle(
        f"fusion-jobs vs peers — {machine.get('cores')} cores {machine.get('cpu')}, RabbitMQ "
        f"{machine.get('rabbitmq', '?')}, PostgreSQL {machine.get('postgresql', '?')}; medians of {reps} reps, "
        "bars span min–max",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
