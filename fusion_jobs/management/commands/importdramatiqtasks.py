"""Copy django-dramatiq's ``Task`` rows into fusion-jobs' run history (``JobRun``).

Each ``django_dramatiq.Task`` becomes the run with the same id (the Dramatiq message id), so a
message still on the queue is recorded on that run when a worker takes it, and running the
command again adds nothing twice. Rows are read in id order, ``--batch-size`` at a time, from
``DRAMATIQ_TASKS_DATABASE``; a line of progress is printed per batch.

Status mapping (django-dramatiq -> fusion-jobs):

- ``done`` -> ``succeeded``, ``failed`` -> ``failed``, ``skipped`` -> ``skipped`` (finished at the
  row's ``updated_at``);
- ``enqueued`` and ``delayed`` -> ``queued``, ``running`` -> ``running``: their message may still be
  on the queue (or be redelivered), and the worker records the outcome on the same run. They are
  marked published, so the outbox relay never publishes them a second time.

Positional arguments are stored as keywords when the actor is registered (its signature names
them); otherwise as ``{"args": [...], ...}``, which the admin then refuses to retry, saying why.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from fusion_jobs.exceptions import TaskArgumentsError, UnknownTaskError
from fusion_jobs.models import JobRun, RunStatus
from fusion_jobs.recording import TRACEBACK_LIMIT, db_alias
from fusion_jobs.registry import get_task
from fusion_jobs.utils import clean_text, positive_int, to_json_result

#: django-dramatiq's Task.status -> JobRun.status.
STATUS_MAP = {
    "enqueued": RunStatus.QUEUED,
    "delayed": RunStatus.QUEUED,
    "running": RunStatus.RUNNING,
    "done": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    "skipped": RunStatus.SKIPPED,
}
FINISHED = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED}
IMPORTED_BY = "django-dramatiq (imported)"


def _message(data: Any) -> dict[str, Any]:
    try:
        decoded = json.loads(bytes(data).decode("utf-8"))
    except (TypeError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def run_from_task(row: Any) -> JobRun:
    """The JobRun for one django_dramatiq Task row (see the module docstring for the mapping)."""
    message = _message(row.message_data)
    args: list[Any] = message["args"] if isinstance(message.get("args"), list) else []
    kwargs: dict[str, Any] = message["kwargs"] if isinstance(message.get("kwargs"), dict) else {}
    options: dict[str, Any] = message["options"] if isinstance(message.get("options"), dict) else {}
    name = clean_text(str(row.actor_name or message.get("actor_name") or "(unknown actor)"))[:200]
    max_retries = 0
    try:
        task_obj = get_task(name)
        max_retries = task_obj.effective_max_retries
        if args:
            kwargs = task_obj.bind_positional(args, kwargs)
            args = []
    except (UnknownTaskError, TaskArgumentsError):
        pass
    # Whatever django-dramatiq stored: NUL and lone surrogates (PostgreSQL refuses them) become U+FFFD.
    stored = to_json_result({"args": args, **kwargs} if args else kwargs, sys.maxsize)
    status = STATUS_MAP.get(row.status, RunStatus.FAILED)
    retries: int = options["retries"] if isinstance(options.get("retries"), int) else 0
    traceback = clean_text(options["traceback"]) if isinstance(options.get("traceback"), str) else ""
    if len(traceback) > TRACEBACK_LIMIT:  # cut as the worker cuts its own
        traceback = traceback[: TRACEBACK_LIMIT // 2] + "\n…\n" + traceback[-TRACEBACK_LIMIT // 2 :]
    error = ""
    if status == RunStatus.FAILED:
        lines = [line for line in traceback.strip().splitlines() if line.strip()]
        error = lines[-1][:4000] if lines else "failed under django-dramatiq"
        if row.status not in STATUS_MAP:
            error = f"django-dramatiq status {str(row.status)[:20]!r} is not known; imported as failed"
    finished = status in FINISHED
    return JobRun(
        id=uuid.UUID(str(row.id)),
        task_name=name,
        queue=clean_text(str(row.queue_name or message.get("queue_name") or "default"))[:100],
        status=status,
        kwargs=stored,
        error=error,
        traceback=traceback if status == RunStatus.FAILED else "",
        attempts=retries + (1 if finished or status == RunStatus.RUNNING else 0),
        max_retries=max_retries,
        enqueued_at=row.created_at or timezone.now(),
        published_at=row.created_at or timezone.now(),
        started_at=row.updated_at if status != RunStatus.QUEUED else None,
        finished_at=row.updated_at if finished else None,
        enqueued_by=IMPORTED_BY,
    )


class Command(BaseCommand):
    help = "Copy django-dramatiq's Task rows into fusion-jobs' run history (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=positive_int, default=1000, help="rows read and written at a time"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not apps.is_installed("django_dramatiq"):
            raise CommandError(
                "django_dramatiq is not in INSTALLED_APPS: its Task table cannot be read (add it back "
                "for the import, then remove it)"
            )
        from django_dramatiq.models import DATABASE_LABEL  # lazy: the app is installed, its models load

        source = apps.get_model("django_dramatiq", "Task")
        rows = source.tasks.using(DATABASE_LABEL)
        total = rows.count()
        alias = db_alias()
        batch_size = options["batch_size"]
        seen = created = 0
        last = None
        self.stdout.write(f"importdramatiqtasks: {total} django-dramatiq task row(s) to copy")
        while True:
            page = rows.order_by("id")
            if last is not None:
                page = page.filter(id__gt=last)
            batch = list(page[:batch_size])
            if not batch:
                break
            last = batch[-1].id
            present = set(
                JobRun.objects.using(alias)
                .filter(pk__in=[row.id for row in batch])
                .values_list("pk", flat=True)
            )
            new = [run_from_task(row) for row in batch if row.id not in present]
            JobRun.objects.using(alias).bulk_create(new, ignore_conflicts=True)
            seen += len(batch)
            created += len(new)
            self.stdout.write(
                f"importdramatiqtasks: {seen}/{total} read, {created} imported, {seen - created} already present"
            )
        self.stdout.write(
            f"importdramatiqtasks: done: {created} run(s) imported, {seen - created} already present"
        )
