from django.contrib import admin
from django.urls import include, path

from example.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("documents/", include("example.documents.urls")),
    path("sandbox/", include("example.sandbox.urls")),
]
