"""The ``runcrons`` loop (gated like the worker)."""

from __future__ import annotations

import sys

from ..worker import Output, disabled_reason


def run_crons(*, stdout: Output = sys.stdout) -> int:
    reason = disabled_reason()
    if reason:
        stdout.write(reason.replace("nothing to run", "no crons fire") + "\n")
        return 0
    raise NotImplementedError("runcrons is being built (issue 4)")
