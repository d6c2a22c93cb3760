from __future__ import annotations

from django.apps import AppConfig


class FusionJobsConfig(AppConfig):
    name = "fusion_jobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .registry import autodiscover

        autodiscover()
