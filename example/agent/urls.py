from django.urls import path

from . import views

app_name = "agent"

urlpatterns = [path("digest/", views.digest_settings, name="digest")]
