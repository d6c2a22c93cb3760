"""How a worker process ends, for its supervisor (``worker.py``) to tell why; standard library only."""

from __future__ import annotations

#: The supervisor's pid, so a child started just as its supervisor died notices at once.
SUPERVISOR_ENV = "FUSION_JOBS_SUPERVISOR_PID"
#: A setting or the broker URL is wrong: restarting would fail the same way.
EXIT_CONFIG = 2
#: RabbitMQ refused the login or the vhost.
EXIT_BROKER_REFUSED = 3
#: Ended by the hard time limit (``middleware.hard_limit``): a task blocked past its timeout.
HARD_LIMIT_EXIT = 75
#: A worker or consumer thread died (``middleware.hard_limit``); the process ends to be replaced.
THREAD_DIED_EXIT = 76
