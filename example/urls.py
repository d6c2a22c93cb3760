from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from example.core import views as core_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("favicon.ico", core_views.favicon, name="favicon"),  # browsers ask for it on every page
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Every user's login (the admin's own login page turns away users who are not staff).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("documents/", include("example.documents.urls")),
    path("sandbox/", include("example.sandbox.urls")),
    path("agent/", include("example.agent.urls")),
]
