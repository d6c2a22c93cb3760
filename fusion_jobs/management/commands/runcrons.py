from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fusion_jobs.scheduler.runner import run_crons
from fusion_jobs.worker import disabled_reason, wait_for_database


class Command(BaseCommand):
    help = (
        "Declare the crons (the registrars' and the maintenance ones), then fire them and the runtime "
        "schedules by queueing their tasks: several may run, a tick fires once (exits 0 when jobs are disabled)."
    )
    requires_system_checks = ["fusion_jobs"]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="fire what is due now, publish what is pending, and exit"
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            help="seconds between two looks at the schedules (FUSION_JOBS_CRON_POLL_INTERVAL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A database that is down or not migrated is one line per attempt, waited for (not a traceback).
        if not disabled_reason() and not wait_for_database(self.stdout, "crons", once=options["once"]):
            raise SystemExit(1)
        code = run_crons(stdout=self.stdout, once=options["once"], poll_interval=options["poll_interval"])
        if code:
            raise SystemExit(code)
