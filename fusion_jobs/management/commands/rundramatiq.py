from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fusion_jobs.worker import run_worker


class Command(BaseCommand):
    help = "Run Dramatiq workers for every fusion_jobs task (exits 0 when jobs are disabled)."
    requires_system_checks = ["fusion_jobs"]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--processes", "-p", type=int, help="worker processes (FUSION_JOBS_PROCESSES)")
        parser.add_argument("--threads", "-t", type=int, help="threads per process (FUSION_JOBS_THREADS)")
        parser.add_argument(
            "--queues", "-Q", nargs="+", help="only these queues (default: every task's queue)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_worker(
            processes=options["processes"],
            threads=options["threads"],
            queues=options["queues"],
            stdout=self.stdout,
        )
        if code:
            raise SystemExit(code)
