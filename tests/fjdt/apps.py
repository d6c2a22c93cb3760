from django.apps import AppConfig


class DjangoTasksTestConfig(AppConfig):
    name = "tests.fjdt"
    label = "fj_django_tasks_test"
