from django.urls import path, re_path

from billing.views import alerts, budgets, catalogue, channels, forecast, plans, reports

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
    path("alerts/rules/<int:pk>/test/", alerts.send_test, name="test_alert_rule"),
    path("alerts/channels/", alerts.add_channel, name="add_alert_channel"),
    path("alerts/channels/<int:pk>/test/", channels.test_channel, name="test_alert_channel"),
    path("alerts/channels/<int:pk>/remove/", channels.remove_channel, name="remove_alert_channel"),
    path("budgets/", budgets.budgets, name="budgets"),
    path("budgets/<int:pk>/", budgets.edit_budget, name="edit_budget"),
    path("budgets/<int:pk>/delete/", budgets.delete_budget, name="delete_budget"),
    path("reports/", reports.reports, name="reports"),
    re_path(r"^reports/(?P<month>\d{4}-\d{2})\.csv$", reports.report_csv, name="report_csv"),
    path("catalogue/sync/", catalogue.sync_models_now, name="sync_models_now"),
]
