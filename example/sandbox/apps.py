from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "example.sandbox"
    label = "sandbox"
    verbose_name = "Sandbox"
