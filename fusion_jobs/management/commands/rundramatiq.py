from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django_dramatiq.management.commands.rundramatiq import Command as DjangoDramatiqCommand

from fusion_jobs.dramatiq_cli import counts, django_dramatiq_options
from fusion_jobs.utils import positive_int
from fusion_jobs.worker import run_worker


class Command(DjangoDramatiqCommand):
    """django-dramatiq's command line (its own ``add_arguments``) on fusion-jobs' supervisor.

    Whichever of ``fusion_jobs`` and ``django_dramatiq`` comes first in INSTALLED_APPS provides
    ``rundramatiq``; the options mean the same in both (see fusion_jobs.dramatiq_cli).
    """

    help = "Run Dramatiq workers for every fusion_jobs task (exits 0 when jobs are disabled)."
    requires_system_checks = ["fusion_jobs"]

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)  # django-dramatiq's options: --processes ... --fork-function
        # Unset counts fall back to FUSION_JOBS_PROCESSES/THREADS; no --path adds nothing.
        parser.set_defaults(processes=None, threads=None, path=[], worker_shutdown_timeout=None)
        parser.add_argument(
            "--prefetch",
            type=positive_int,
            help="messages each process takes from RabbitMQ ahead (default: one per thread, fair to long "
            "tasks; twice that drains short tasks faster)",
        )

        parser.add_argument(
            "--metrics-port",
            type=int,
            help="serve Prometheus metrics of the worker processes on this port (FUSION_JOBS_METRICS_PORT; "
            "bound to FUSION_JOBS_METRICS_ADDRESS, 127.0.0.1 by default; 0: off)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        processes, threads = counts(options)
        with django_dramatiq_options(options):
            code = self._run(processes, threads, options)
        if code:
            raise SystemExit(code)

    def _run(self, processes: int | None, threads: int | None, options: dict[str, Any]) -> int:
        # --reload is django-dramatiq's "--watch .": a changed loaded source file replaces the processes.
        return run_worker(
            processes=processes,
            threads=threads,
            queues=options["queues"],
            prefetch=options["prefetch"],
            stdout=self.stdout,
            metrics_port=options["metrics_port"],
            code_reload=bool(options["watch_dir"]),
        )
