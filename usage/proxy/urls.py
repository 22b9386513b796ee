"""`/proxy/…` in Django's URLconf. The ASGI application answers these paths before Django
(usage.proxy.app.with_proxy); the patterns here name them for `reverse` and answer
callers that reach Django anyway (a server not started on toki_dashboard.asgi)."""

from django.urls import path

from usage.proxy import views

app_name = "proxy"

urlpatterns = [
    path("v1", views.not_served, name="base"),
    path("v1/<path:rest>", views.not_served, name="call"),
    path("<slug:slug>/v1", views.not_served, name="account-base"),
    path("<slug:slug>/v1/<path:rest>", views.not_served, name="account-call"),
]
