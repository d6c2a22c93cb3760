"""The writer handover is bounded: a hung writer can't hold every worker thread (and the hard-limit
watchdog) forever; the caller gets a database-outage error and the next transition gets a new writer."""

from __future__ import annotations

import threading
import time

from django.db import DatabaseError

from fusion_jobs.recording import writer as writer_module
from fusion_jobs.recording.writer import BatchWriter


def test_a_hung_writer_times_out_as_a_database_outage_and_is_replaced(monkeypatch):
    release = threading.Event()
    applied: list[object] = []

    def apply_batch(ops):
        if "hang" in ops:
            release.wait(30)  # a database call that does not return
        applied.extend(ops)

    monkeypatch.setattr(writer_module, "apply_batch", apply_batch)
    monkeypatch.setattr(writer_module, "close_old_connections", lambda: None)
    monkeypatch.setattr(writer_module, "HANDOVER_TIMEOUT", 0.5, raising=False)
    writer = BatchWriter()
    outcome: list[BaseException | object] = []

    def submit() -> None:
        try:
            outcome.append(writer.apply("hang"))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=submit, daemon=True)
    started = time.monotonic()
    caller.start()
    caller.join(5)
    try:
        assert not caller.is_alive(), "apply() still waits for a hung writer"
        [error] = outcome
        assert isinstance(error, DatabaseError), error  # the middleware's outage handling applies
        assert "did not answer" in str(error)
        assert time.monotonic() - started < 3
        # The next transition is applied by a new writer thread while the old one is still stuck.
        assert writer.apply("next") == "next"
        assert applied == ["next"]
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while any(t.name == "fusion-jobs-writer" and t.is_alive() for t in threading.enumerate()):
        if time.monotonic() > deadline:
            break
        writer.stop(timeout=1)
        time.sleep(0.05)
    assert applied[-1] == "hang"  # the stuck batch finished when its call returned
