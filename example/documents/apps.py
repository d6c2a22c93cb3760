from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "example.documents"
    label = "documents"
    verbose_name = "Documents"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (lazy: the receivers import models, ready once apps are)
