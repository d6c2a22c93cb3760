"""One worker process of ``rundramatiq``: ``python -m fusion_jobs.worker_process --threads N [--queues ...]``.

``rundramatiq`` starts and supervises these itself instead of Dramatiq's master: Dramatiq's master
stops every worker process when one dies, so a killed or out-of-memory process used to halt all
consuming until the survivors' in-flight tasks ended. Each process here is independent: it dies
with its supervisor (``PR_SET_PDEATHSIG``, and a parent watch where that is not available), so a
``SIGKILL``ed ``rundramatiq`` never leaves consumers behind, and it leaves only its own capacity
missing while the supervisor replaces it.

Exit codes: 0 stopped on request, 2 the configuration or an import failed, 3 RabbitMQ refused the
login or the vhost (restarting would only loop), 75 the hard time limit ended it, 76 one of its
threads died; anything else: restart me.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from .exit_codes import EXIT_BROKER_REFUSED, EXIT_CONFIG, SUPERVISOR_ENV

#: Milliseconds a graceful stop waits for running tasks (Dramatiq's default shutdown timeout).
SHUTDOWN_TIMEOUT_MS = int(os.environ.get("dramatiq_worker_shutdown_timeout", 600_000))  # noqa: SIM112
_PR_SET_PDEATHSIG = 1


def die_with_supervisor() -> None:
    """SIGKILL this process when the process that started it dies, however it dies.

    Linux's parent-death signal does it at once; elsewhere (or if ``prctl`` is unavailable) a
    thread notices the re-parenting within a second. A supervisor that died before this ran is
    caught by comparing the parent's pid with the one it passed down.
    """
    expected = int(os.environ.get(SUPERVISOR_ENV, "0") or 0)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass
    parent = expected or os.getppid()
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="fusion-jobs-parent-watch", daemon=True).start()


def start_heartbeat(broker: Any, queues: list[str] | None, threads: int) -> Any:
    """Register this process in the workers registry and count its runs (``fusion_jobs.workers``)."""
    # lazy: once django.setup() has run (bootstrap): this module is loaded by the supervisor too.
    from fusion_jobs.middleware.heartbeat import HeartbeatCounters
    from fusion_jobs.workers import Heartbeat

    consumed = queues or [q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ"))]
    heartbeat = Heartbeat(
        "worker",
        queues=consumed,
        processes=int(os.environ.get("FUSION_JOBS_PROCESSES") or 1),
        threads=threads,
        supervisor_pid=int(os.environ.get(SUPERVISOR_ENV) or 0) or None,
    )
    broker.add_middleware(HeartbeatCounters(heartbeat))
    return heartbeat.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusion_jobs.worker_process")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--queues", nargs="*", default=None)
    args = parser.parse_args(argv)
    die_with_supervisor()

    stopping = threading.Event()
    first_signal = [0.0]

    def on_signal(signum: int, frame: object) -> None:
        # A second SIGTERM well after the first means "now" (as Dramatiq's workers); one arriving
        # together with the first is the same stop sent twice (the supervisor's forward and a
        # process-group or cgroup-wide signal) and must not cut the graceful stop short.
        if stopping.is_set():
            if time.monotonic() - first_signal[0] > 3:
                logging.getLogger("fusion_jobs.worker").warning(
                    "worker process %s: stopping now", os.getpid()
                )
                os._exit(1)
            return
        first_signal[0] = time.monotonic()
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us

    try:  # lazy: after the parent-death signal is set: django.setup() and the task modules can be slow
        import dramatiq
        import pika

        from fusion_jobs import bootstrap
        from fusion_jobs.backends.broker import describe_refusal, open_connection
        from fusion_jobs.backends.queues import check_queues
        from fusion_jobs.middleware.relay import OutboxRelay
    except Exception:
        logging.basicConfig()
        logging.getLogger("fusion_jobs.worker").exception("worker process %s could not start", os.getpid())
        return EXIT_CONFIG
    logger = logging.getLogger("fusion_jobs.worker")
    # As Dramatiq's own worker processes: pika's connection errors are reported once, by the
    # consumer, not by pika's logger in a traceback per attempt (and again at every shutdown).
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    broker = bootstrap.broker
    try:
        open_connection().close()
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError) as exc:
        logger.error("worker process %s: %s; stopping", os.getpid(), describe_refusal(exc))
        return EXIT_BROKER_REFUSED
    except pika.exceptions.AMQPError:
        pass  # down or restarting: the consumers retry until it is back
    try:  # a queue of another type (FUSION_JOBS_QUEUE_TYPE switched): one clear line, no retry loop
        connection = open_connection()
        try:
            mismatch = check_queues(connection, sorted(args.queues or broker.get_declared_queues()))
        finally:
            if connection.is_open:
                connection.close()
    except pika.exceptions.AMQPError:
        mismatch = None
    if mismatch:
        logger.error("worker process %s: %s; stopping", os.getpid(), mismatch)
        return EXIT_CONFIG
    broker.add_middleware(OutboxRelay())  # this process's relay thread (see fusion_jobs.middleware)
    broker.emit_after("process_boot")
    # Logical names: the broker puts them in the queue namespace when it talks to RabbitMQ.
    worker = dramatiq.Worker(
        broker, queues=set(args.queues) if args.queues else None, worker_threads=args.threads
    )
    heartbeat = start_heartbeat(broker, args.queues, args.threads)
    worker.start()
    logger.info("Worker process is ready for action.")
    while not stopping.wait(1.0):
        pass
    logger.info("worker process %s stopping: waiting for its running tasks", os.getpid())
    heartbeat.draining = True
    worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
    heartbeat.stop()
    broker.close()
    logger.info("worker process %s stopped", os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
