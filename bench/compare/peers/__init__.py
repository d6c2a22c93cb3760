"""Every compared system, in the order of the first repetition (later ones rotate it).

Importing this needs ``django.setup()`` first: the peers import their task modules and models.
"""

from __future__ import annotations

from bench.compare.peer import Peer
from bench.compare.peers import (
    celery,
    dd_admin,
    django_q2,
    django_tasks_db,
    dramatiq,
    fusion_jobs,
    procrastinate,
)

ALL: tuple[Peer, ...] = (
    fusion_jobs.PEER,
    procrastinate.PEER,
    celery.RESULTS,
    celery.RESULTS_REUSE,
    django_tasks_db.PEER,
    django_q2.PEER,
    dramatiq.PEER,
    dd_admin.PEER,
    celery.PREFORK_POOL,
    celery.THREAD_POOL,
)
BY_KEY = {peer.key: peer for peer in ALL}
