from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fusion_jobs.conf import jobs_settings
from fusion_jobs.relay import relay_forever, relay_once
from fusion_jobs.utils import mask_url
from fusion_jobs.worker import disabled_reason


class Command(BaseCommand):
    help = "Publish runs that were committed but never reached the broker (the outbox relay)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="relay what is waiting now, then exit")
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="seconds between polls (due retries and delayed starts go out within about this)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reason = disabled_reason()
        if reason:
            self.stdout.write(reason)
            return
        if options["once"]:
            count = relay_once(min_age=0)
            self.stdout.write(f"relayjobs: published {count} run(s)")
            return
        self.stdout.write(
            f"relayjobs: relaying unpublished runs to {mask_url(str(jobs_settings.BROKER_URL))} "
            f"every {options['interval']:g} s"
        )
        relay_forever(interval=options["interval"])
