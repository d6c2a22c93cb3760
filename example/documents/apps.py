from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "example.documents"
    label = "documents"
    verbose_name = "Documents"
