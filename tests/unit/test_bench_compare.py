"""bench.compare's arithmetic: same-run ratios, the fastest tracked peer, and targets met or missed."""

from __future__ import annotations

from bench.compare.peer import Peer
from bench.compare.summary import summarize


def peer(key: str, *, tracked: bool = True) -> Peer:
    return Peer(
        key=key,
        label=key,
        family="db",
        workers=(),
        send=print,
        config="",
        history="",
        durable="",
        confirms="",
        concurrency="",
        tracked=tracked,
    )


def rep(fj_drain: float, pc_drain: float, q2_drain: float, dramatiq_drain: float) -> dict:
    return {
        "load": (0.0, 0.0, 0.0),
        "results": {
            "fusion_jobs": {
                "enqueue": {"rate": 2400.0, "p50_ms": 0.5},
                "batch": {"1000": {"rate": 9000.0}},
                "drain": {"rate": fj_drain},
                "latency": {"p50_ms": 2.0},
            },
            "procrastinate": {
                "enqueue": {"rate": 2000.0, "p50_ms": 0.5},
                "batch": {"1000": {"rate": 10000.0}},
                "drain": {"rate": pc_drain},
            },
            "django_q2": {"enqueue": {"rate": 1000.0}, "drain": {"rate": q2_drain}},
            "dramatiq": {
                "enqueue": {"rate": 3000.0},
                "drain": {"rate": dramatiq_drain},
                "latency": {"p50_ms": 1.0},
            },
        },
    }


PEERS = [peer("fusion_jobs"), peer("procrastinate"), peer("django_q2"), peer("dramatiq", tracked=False)]


def targets(reps: list[dict]) -> dict[str, dict]:
    return {t["target"]: t for t in summarize(reps, {}, PEERS)["targets"]}


def test_ratios_are_medians_of_same_run_ratios_against_the_fastest_tracked_peer() -> None:
    # The fastest tracked peer changes between repetitions; bare Dramatiq (untracked) never counts.
    reps = [rep(3000, 1000, 500, 9000), rep(3000, 500, 1500, 9000), rep(6000, 1000, 1000, 9000)]
    m = summarize(reps, {}, PEERS)
    assert m["ratio"]["drain.fastest_tracked"] == 3.0  # per rep: 3.0, 2.0, 6.0
    assert m["ratio"]["drain.dramatiq"] == 3000 / 9000
    assert m["median"]["fusion_jobs.drain.rate"] == 3000
    assert m["spread"]["fusion_jobs.drain.rate"] == [3000, 6000]


def test_targets_are_judged_met_missed_or_not_measured() -> None:
    found = targets([rep(3000, 1000, 500, 9000)])
    assert found["enqueue() ÷ procrastinate defer, runs/s"]["met"] is True  # 1.2x
    assert found["enqueue() p50"]["met"] is True  # 0.5 ms <= 0.6 ms
    assert found["enqueue_many(1000) ÷ batch_defer(1000), runs/s"]["met"] is False  # 0.9x
    assert found["drain ÷ fastest tracked peer"]["met"] is True  # 3.0x
    assert found["drain ÷ bare Dramatiq"]["met"] is False  # 0.33x
    assert found["drain ÷ django-dramatiq AdminMiddleware"]["met"] is None  # not in this run
