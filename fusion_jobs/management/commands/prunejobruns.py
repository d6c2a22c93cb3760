from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fusion_jobs.conf import jobs_settings
from fusion_jobs.retention import DEFAULT_BATCH_SIZE, prune_runs


class Command(BaseCommand):
    help = "Delete finished runs older than FUSION_JOBS_RUN_RETENTION_DAYS, in batches of primary keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, help="keep runs finished in the last N days (FUSION_JOBS_RUN_RETENTION_DAYS)"
        )
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="runs deleted per transaction"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else int(jobs_settings.RUN_RETENTION_DAYS)
        if days < 0:
            raise CommandError("--days must be 0 or more")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be 1 or more")
        self.stdout.write(
            f"prunejobruns: runs finished more than {days} day(s) ago, batches of {options['batch_size']}"
            f"{' (dry run)' if options['dry_run'] else ''}"
        )
        result = prune_runs(
            days=days,
            batch_size=options["batch_size"],
            dry_run=options["dry_run"],
            progress=lambda line: self.stdout.write(f"prunejobruns: {line}"),
        )
        if not result.dry_run:
            self.stdout.write(f"prunejobruns: done in {result.seconds:.1f} s")
