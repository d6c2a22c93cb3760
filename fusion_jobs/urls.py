"""URLs to include in a project: ``path("jobs/", include("fusion_jobs.urls"))`` serves ``jobs/metrics``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "fusion_jobs"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
]
