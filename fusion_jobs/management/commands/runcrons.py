from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from fusion_jobs.scheduler.runner import run_crons


class Command(BaseCommand):
    help = "Fire the registered crons by enqueueing their tasks (exits 0 when jobs are disabled)."

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_crons(stdout=self.stdout)
        if code:
            raise SystemExit(code)
