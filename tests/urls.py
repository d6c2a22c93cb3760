"""URLs of the library's tests: the admin (the example's pages are tested with the example's settings)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
