from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from billing.views.metrics import metrics
from toki_dashboard.api import api_urls

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls()),
    path("metrics", metrics, name="metrics"),
    path("proxy/", include("usage.proxy.urls")),
    path("", include("usage.urls")),
    path("", include("billing.urls")),
]

handler403 = "toki_dashboard.error_pages.permission_denied"
handler500 = "toki_dashboard.error_pages.server_error"
