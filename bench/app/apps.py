from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "bench.app"
    label = "fj_bench"
    verbose_name = "Benchmark no-op tasks"
