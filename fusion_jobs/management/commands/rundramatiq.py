from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fusion_jobs.utils import positive_int
from fusion_jobs.worker import run_worker


class Command(BaseCommand):
    help = "Run Dramatiq workers for every fusion_jobs task (exits 0 when jobs are disabled)."
    requires_system_checks = ["fusion_jobs"]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--processes", "-p", type=positive_int, help="worker processes (FUSION_JOBS_PROCESSES)"
        )
        parser.add_argument(
            "--threads", "-t", type=positive_int, help="threads per process (FUSION_JOBS_THREADS)"
        )
        parser.add_argument(
            "--queues", "-Q", nargs="+", help="only these queues (default: every task's queue)"
        )
        parser.add_argument(
            "--prefetch",
            type=positive_int,
            help="messages each process takes from RabbitMQ ahead (default: one per thread, fair to long "
            "tasks; twice that drains short tasks faster)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_worker(
            processes=options["processes"],
            threads=options["threads"],
            queues=options["queues"],
            prefetch=options["prefetch"],
            stdout=self.stdout,
        )
        if code:
            raise SystemExit(code)
