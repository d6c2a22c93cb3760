"""``python -m bench.compare``: fusion-jobs side by side with its peers (see ``__main__.py`` for the options).

``peer.py`` declares what a compared system is, ``peers/`` one module per system, ``phases.py``
the phases every peer goes through (``run_peer``), ``child.py`` the process each peer runs in,
``services.py`` and ``workers.py`` RabbitMQ, PostgreSQL and worker processes, ``summary.py``,
``report.py`` and ``chart.py`` the medians, targets and output, ``inline.py`` the jobs-off overhead.
"""
