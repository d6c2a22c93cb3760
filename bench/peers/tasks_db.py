"""django-tasks-db: a Django Tasks framework task on its ``DatabaseBackend`` (alias ``db`` in bench.settings).

Worker: ``manage.py db_worker --backend db``, two processes (it runs one task at a time per process).
"""

from __future__ import annotations

try:  # Django 6 has the framework built in; 5.2 takes the django-tasks backport
    from django.tasks import task
except ImportError:
    from django_tasks import task

from bench.sidechannel import mark


@task(backend="db")
def noop(p: str = "d") -> None:
    mark(p)
