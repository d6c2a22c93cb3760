"""One ``rundramatiq --fork-function dotted.path``: ``python -m fusion_jobs.fork_function dotted.path``.

As Dramatiq's ``--fork-function``: the function runs in its own process next to the worker
processes (a scheduler, a metrics exporter). The process sets up Django first and dies with the
``rundramatiq`` that started it.
"""

from __future__ import annotations

import sys

from fusion_jobs.worker_process import die_with_supervisor


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fusion_jobs.fork_function dotted.path.to.function", file=sys.stderr)
        return 2
    die_with_supervisor()
    # lazy: Django is set up only once the process dies with its supervisor (the settings are the
    # project's DJANGO_SETTINGS_MODULE, inherited from rundramatiq).
    import django
    from django.utils.module_loading import import_string

    django.setup()
    function = import_string(argv[0])
    result = function()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
