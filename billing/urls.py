from django.urls import path, re_path

from billing.views import alerts, catalogue, forecast, plans, reports

app_name = "billing"

urlpatterns: list = [
    path("plans/", plans.plans, name="plans"),
    path("plans/purchases/", plans.record_purchase, name="record_purchase"),
    path("plans/purchases/void/", plans.void_purchase, name="void_purchase"),
    path("plans/wallet/top-ups/", plans.record_top_up, name="record_top_up"),
    path("plans/wallet/adjustments/", plans.record_adjustment, name="record_adjustment"),
    path("plans/sync/", plans.sync_now, name="sync_now"),
    path("plans/balance-card/", plans.balance_card, name="balance_card"),
    path("plans/forecast-chart/", forecast.forecast_chart, name="forecast_chart"),
    path("alerts/", alerts.alert_rules, name="alerts"),
    path("alerts/rules/<int:pk>/", alerts.edit_alert_rule, name="edit_alert_rule"),
    path("alerts/rules/<int:pk>/test/", alerts.send_test_email, name="test_alert_rule"),
    path("reports/", reports.reports, name="reports"),
    re_path(r"^reports/(?P<month>\d{4}-\d{2})\.csv$", reports.report_csv, name="report_csv"),
    path("catalogue/sync/", catalogue.sync_models_now, name="sync_models_now"),
]
