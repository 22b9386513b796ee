from django.urls import path

from usage.views import overview

app_name = "usage"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("overview/spend-chart/", overview.spend_chart, name="overview_spend_chart"),
]
