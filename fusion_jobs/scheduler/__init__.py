"""The cron half: schedules declared with ``ensure_cron``, fired by ``runcrons`` on APScheduler."""
