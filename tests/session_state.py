"""State the session fixtures share with test modules.

Imported as ``tests.session_state`` by both: pytest loads ``conftest.py`` as a module of its own,
so a module-level value there is a different object from ``tests.conftest``'s in a test module.
"""

from __future__ import annotations

#: Supervisor pids of the session's worker (``conftest.worker``): its processes heartbeat into the
#: test database too, and tests of the workers registry leave its rows out.
SESSION_WORKER_PIDS: set[int] = set()
