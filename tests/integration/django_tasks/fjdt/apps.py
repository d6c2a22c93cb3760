from django.apps import AppConfig


class DjangoTasksTestConfig(AppConfig):
    name = "tests.integration.django_tasks.fjdt"
    label = "fj_django_tasks_test"
