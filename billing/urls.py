from django.urls import path  # noqa: F401  (the billing pages add their routes here)

app_name = "billing"

urlpatterns: list = []
