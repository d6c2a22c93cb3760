from django.apps import AppConfig


class BenchDjangoTasksConfig(AppConfig):
    name = "bench.dtapp"
    label = "bench_dt"
