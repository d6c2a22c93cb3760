from django.contrib import admin
from django.urls import include, path

from example.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("favicon.ico", core_views.favicon, name="favicon"),  # browsers ask for it on every page
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("documents/", include("example.documents.urls")),
    path("sandbox/", include("example.sandbox.urls")),
    path("agent/", include("example.agent.urls")),
]
