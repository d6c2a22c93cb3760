from django.urls import path

from . import views

app_name = "documents"

urlpatterns = [
    path("", views.document_list, name="list"),
    path("search/", views.search, name="search"),
    path("<int:pk>/", views.document_detail, name="detail"),
    path("<int:pk>/status.json", views.document_status, name="status"),
    path("<int:pk>/reprocess/", views.reprocess, name="reprocess"),
]
