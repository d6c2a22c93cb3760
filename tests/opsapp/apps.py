from django.apps import AppConfig


class OpsAppConfig(AppConfig):
    """Tasks and a two-step migration for the operating tests (workers registry, reloads)."""

    name = "tests.opsapp"
    label = "fj_opsapp"
