from django.urls import path

from usage.views import overview

app_name = "usage"

urlpatterns = [
    path("", overview.overview, name="overview"),
]
