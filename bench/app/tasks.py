"""fusion-jobs no-op tasks for ``bench/compare.py`` (autodiscovered as ``bench.app.tasks``)."""

from __future__ import annotations

from bench.sidechannel import mark
from fusion_jobs import task

QUEUE = "bench_fj"


@task(name="bench.noop", queue=QUEUE, max_retries=0)
def noop(p: str = "d") -> None:
    """Writes its start time to the side channel; nothing else."""
    mark(p)


@task(name="bench.inline_noop", queue=QUEUE, max_retries=0)
def inline_noop(p: str = "i") -> None:
    """Does nothing: the inline-overhead benchmark compares enqueue() of it with a direct call."""


def plain_noop(p: str = "i") -> None:
    """The same empty function, not a task: the direct-call baseline."""
