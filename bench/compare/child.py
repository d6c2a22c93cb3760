"""One child process per peer and repetition: ``python -m bench.compare.child PEER ARGS_JSON``.

Each peer runs in its own Django process whose ``default`` database is the peer's own, as a real
deployment would; the child prints its results as one ``RESULT {json}`` line, which ``spawn()``
(the parent's side) reads while relaying the rest of the child's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django

from bench.compare.services import ROOT, BenchError, log, set_deadline
from bench.compare.workers import stop_all

RESULT = "RESULT "


def spawn(argv: list[str], env: dict[str, str], what: str, timeout: float) -> Any:
    """Run ``python argv`` in its own session; returns its RESULT, raises ``BenchError`` if it fails."""
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    result = None
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(RESULT):
                result = json.loads(line[len(RESULT) :])
            elif line.strip():
                print(f"    {line.rstrip()}", flush=True)
                tail = [*tail[-20:], line.rstrip()]
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            # The child stops its own workers on SIGTERM; SIGKILL only if it does not exit.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    if proc.returncode or result is None:
        raise BenchError(f"{what} failed (exit {proc.returncode})")
    return result


def main(argv: list[str]) -> int:
    """The child: set Django up on the peer's database, run every phase, print the RESULT line."""
    key, args_json = argv
    args = SimpleNamespace(**json.loads(args_json))
    set_deadline(args.deadline)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    django.setup()
    # The peers import their task modules and models, which need the app registry (django.setup()).
    from bench.compare.peers import BY_KEY
    from bench.compare.phases import run_peer

    try:
        result = run_peer(BY_KEY[key], args, Path(args.logdir))
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop_all()
    print(RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
