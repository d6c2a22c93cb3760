from django.urls import path

from . import views

app_name = "sandbox"

urlpatterns = [
    path("jobs/", views.jobs_page, name="jobs"),
    path("jobs/status.json", views.status_json, name="status"),
    path("jobs/enqueue/", views.enqueue_demo, name="enqueue"),
    path("jobs/runs/<uuid:run_id>.json", views.run_json, name="run"),
]
