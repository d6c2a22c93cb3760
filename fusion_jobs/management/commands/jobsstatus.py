"""``manage.py jobsstatus [--json]``: is anything consuming, what waits, and which crons fire next."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from fusion_jobs.api import get_jobs_status
from fusion_jobs.conf import broker_queue
from fusion_jobs.models import CronSchedule
from fusion_jobs.registry import all_tasks
from fusion_jobs.workers import QueueView, list_workers, queue_views, unconsumed_warnings

#: Schedules listed, soonest first.
SCHEDULES_SHOWN = 20


def broker_depths(names: list[str]) -> tuple[dict[str, int], str | None]:
    """Messages ready in each queue, from RabbitMQ (passive declares); ``({}, why)`` if it can't be asked."""
    # lazy: both load pika, only when the broker is asked: the web process never loads pika.
    import pika

    from fusion_jobs.backends.broker import open_connection

    depths: dict[str, int] = {}
    try:
        connection = open_connection()
    except (pika.exceptions.AMQPError, OSError) as exc:
        return {}, f"RabbitMQ not asked ({type(exc).__name__})"
    try:
        channel = connection.channel()
        for name in names:
            try:
                depths[name] = int(
                    channel.queue_declare(broker_queue(name), passive=True).method.message_count
                )
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing in it
                depths[name] = 0
                channel = connection.channel()
    finally:
        if connection.is_open:
            connection.close()
    return depths, None


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    seconds = int((now - then).total_seconds())
    if abs(seconds) < 120:
        return f"{seconds} s"
    if abs(seconds) < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def schedules(now: datetime) -> list[dict[str, Any]]:
    rows = (
        CronSchedule.objects.filter(enabled=True, paused=False, orphaned=False, next_fire_at__isnull=False)
        .order_by("next_fire_at")
        .only("name", "task_name", "expression", "timezone", "next_fire_at", "last_fired_at")[
            :SCHEDULES_SHOWN
        ]
    )
    return [
        {
            "name": s.name,
            "task": s.task_name,
            "expression": s.expression,
            "timezone": s.timezone,
            "next_fire_at": s.next_fire_at.isoformat() if s.next_fire_at else None,
            "last_fired_at": s.last_fired_at.isoformat() if s.last_fired_at else None,
            "overdue": bool(s.next_fire_at and s.next_fire_at < now),
        }
        for s in rows
    ]


class Command(BaseCommand):
    help = "Show the registered workers, the queues (depth, oldest waiting run) and the next schedules."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="one JSON object (keys: workers, queues, ...)"
        )
        parser.add_argument(
            "--no-broker", action="store_true", help="don't ask RabbitMQ for the queues' message counts"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        jobs = get_jobs_status()
        try:
            workers = list_workers(now)
        except DatabaseError as exc:  # down or not migrated: a health check's reason, not a traceback
            lines = str(exc).strip().splitlines()
            raise CommandError(
                f"fusion-jobs: database unavailable or not migrated ({lines[0][:200] if lines else type(exc).__name__}); "
                "run manage.py migrate"
            ) from None
        task_queues = sorted({t.effective_queue for t in all_tasks().values()})
        queues = queue_views(now, workers, also=task_queues)
        broker_note = None
        if jobs["enabled"] and not options["no_broker"]:
            depths, broker_note = broker_depths([q.name for q in queues])
            for q in queues:
                q.broker_messages = depths.get(q.name)
        warnings = unconsumed_warnings(now, queues)
        report = {
            "jobs": {k: jobs[k] for k in ("enabled", "mode", "broker", "namespace")},
            "now": now.isoformat(),
            "workers": [w.as_dict() for w in workers],
            "queues": [q.as_dict() for q in queues],
            "schedules": schedules(now),
            "warnings": warnings,
            "broker_note": broker_note,
        }
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self._print(report, now, queues, broker_note)

    def _print(
        self, report: dict[str, Any], now: datetime, queues: list[QueueView], note: str | None
    ) -> None:
        w = self.stdout.write
        jobs = report["jobs"]
        w(
            f"fusion-jobs: mode={jobs['mode']} broker={jobs['broker'] or '-'} namespace={jobs['namespace'] or '-'}"
        )
        workers = report["workers"]
        counts = {
            state: sum(1 for x in workers if x["state"] == state) for state in ("live", "stale", "gone")
        }
        w(f"\nWorkers: {counts['live']} live, {counts['stale']} stale, {counts['gone']} gone")
        for x in workers:
            seen = _ago(now, datetime.fromisoformat(x["last_seen_at"]))
            up = _ago(now, datetime.fromisoformat(x["started_at"]))
            what = (
                f"queues={','.join(x['queues']) or '-'} threads={x['threads']}"
                if x["kind"] == "worker"
                else "runcrons"
            )
            draining = " draining" if x["draining"] else ""
            w(
                f"  {x['state']:<5} {x['kind']:<6} {x['host']}:{x['pid']} {what} v{x['version']} up {up}, "
                f"seen {seen} ago; done {x['runs_done']} failed {x['runs_failed']} running {x['running']}{draining}"
            )
        if not workers:
            w("  none registered")
        w("\nQueues:")
        for q in queues:
            oldest = f", oldest waiting {_ago(now, q.oldest)}" if q.oldest else ""
            broker = f"; RabbitMQ: {q.broker_messages} ready" if q.broker_messages is not None else ""
            w(f"  {q.name}: {q.waiting} waiting{oldest}; {q.live_workers} live worker(s){broker}")
        if not queues:
            w("  none")
        if note:
            w(f"  ({note})")
        for line in report["warnings"]:
            w(f"  WARNING: {line}")
        w("\nSchedules (next due):")
        for s in report["schedules"]:
            nxt = datetime.fromisoformat(s["next_fire_at"])
            when = f"overdue by {_ago(now, nxt)}" if s["overdue"] else f"in {_ago(nxt, now)}"
            w(
                f"  {s['name']}: {s['next_fire_at']} ({when}) '{s['expression']}' {s['timezone']} -> {s['task']}"
            )
        if not report["schedules"]:
            w("  none active")
