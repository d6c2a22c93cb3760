from __future__ import annotations

import sys

from django.apps import AppConfig, apps
from django.conf import settings


class FusionJobsConfig(AppConfig):
    name = "fusion_jobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # lazy: imported in ready(), as Django asks: they load the models, and the registry is ready only now.
        from . import checks  # noqa: F401  (registers the system checks)
        from .registry import autodiscover

        autodiscover()
        if _uses_dramatiq_actors():
            # lazy: only in a django-dramatiq project, whose @dramatiq.actor functions become tasks:
            # without a broker the web process of a fusion-jobs project never loads Dramatiq.
            from .dramatiq_actors import adopt_actors, import_actor_modules

            import_actor_modules()
            adopt_actors()


def _uses_dramatiq_actors() -> bool:
    """Whether plain Dramatiq actors may be declared: django-dramatiq's app or settings, or Dramatiq loaded."""
    return (
        "dramatiq" in sys.modules
        or apps.is_installed("django_dramatiq")
        or hasattr(settings, "DRAMATIQ_AUTODISCOVER_MODULES")
        or hasattr(settings, "DRAMATIQ_BROKER")
    )
