from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "example.core"
    label = "example_core"
    verbose_name = "Example"
