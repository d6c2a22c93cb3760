"""fusion-jobs in the Django admin: run history, the dashboard, cron schedules and workers.

Importing this package (Django's admin autodiscovery does) registers every ModelAdmin; each lives
in its own module:

* :mod:`.runs` - runs: the list and a run's page (:mod:`.filters`, :mod:`.counting`,
  :mod:`.changelist`, :mod:`.display`), retry and cancel (:mod:`.actions`);
* :mod:`.dashboard` - the jobs dashboard (its numbers from :mod:`fusion_jobs.stats`);
* :mod:`.crons` - cron schedules (the runtime schedule form in :mod:`.forms`);
* :mod:`.workers` - worker processes and runcrons.

Everything shown from a run or schedule goes through ``format_html``/``format_html_join`` or
template auto-escaping, because arguments, results, tracebacks and names can hold user input.
"""

from . import crons, dashboard, runs, workers

__all__ = ["crons", "dashboard", "runs", "workers"]
