from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.djdramatiq_project.shop"
    label = "djd_shop"
    default_auto_field = "django.db.models.BigAutoField"
