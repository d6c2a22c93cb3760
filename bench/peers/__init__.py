"""The peers' own modules, as their workers import them: apps, brokers and the no-op task of each system.

``bench/compare/peers/`` declares how the harness drives each of them (one ``Peer`` record each).
"""

import os

BROKER_URL = os.environ.get("FJ_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/fj_perf")
