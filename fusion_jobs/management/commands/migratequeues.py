from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fusion_jobs.conf import jobs_settings
from fusion_jobs.registry import all_tasks
from fusion_jobs.worker import disabled_reason


class Command(BaseCommand):
    help = (
        "Recreate the RabbitMQ queues whose type or arguments changed (FUSION_JOBS_QUEUE_TYPE, "
        "MAX_PRIORITY, DELIVERY_LIMIT), moving their waiting messages across. Stop the workers, "
        "runcrons and the relay first; safe to rerun if it stops midway."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="logical queue to migrate (repeatable); default: every task's queue and the default queue",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reason = disabled_reason()
        if reason:
            raise CommandError(reason)
        # lazy: pika only with jobs enabled (the web process never loads it). Task modules are
        # autodiscovered at django.setup(), so all_tasks() names every queue.
        from fusion_jobs.backends.broker import open_connection
        from fusion_jobs.backends.queues import migrate_queue, physical_queues

        queues = options["queues"] or sorted(
            {t.effective_queue for t in all_tasks().values()} | {str(jobs_settings.DEFAULT_QUEUE)}
        )

        connection = open_connection()
        try:
            for logical in queues:
                for queue, arguments in physical_queues(logical):
                    try:
                        done = migrate_queue(connection, queue, arguments)
                    except RuntimeError as exc:
                        raise CommandError(f"migratequeues: {exc}") from None
                    state = "recreated" if done.recreated else "unchanged"
                    self.stdout.write(
                        f"migratequeues: {queue}: {state} ({jobs_settings.QUEUE_TYPE}), "
                        f"{done.moved} message(s) moved"
                    )
        finally:
            if connection.is_open:
                connection.close()
