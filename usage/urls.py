from django.urls import path

from usage.teams import views as teams
from usage.views import catalogue, errors, imports, keys, language, models, overview, rates, requests, spend
from usage.views import settings as settings_views

app_name = "usage"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("models/", models.models_page, name="models"),
    path("catalogue/", catalogue.catalogue, name="catalogue"),
    # Model names may hold slashes and dots: the card route comes first, the path converter is greedy.
    path("models/<path:model>/cards/<slug:card>/", models.model_card, name="model_card"),
    path("models/<path:model>/", models.model_detail, name="model_detail"),
    path("requests/", requests.requests_log, name="requests"),
    path("requests/export.csv", requests.requests_csv, name="requests_csv"),
    path("requests/<int:pk>/", requests.request_detail, name="request_detail"),
    path("errors/", errors.errors_page, name="errors"),
    path("spend/", spend.spend, name="spend"),
    path("keys/", keys.keys, name="keys"),
    path("keys/<int:pk>/edit/", keys.key_edit, name="key_edit"),
    path("teams/", teams.teams, name="teams"),
    path("settings/", settings_views.api_tokens, name="settings"),
    path("settings/tokens/new/", settings_views.api_token_create, name="token_create"),
    path("settings/tokens/<int:pk>/revoke/", settings_views.api_token_revoke, name="token_revoke"),
    path("settings/prices/", settings_views.prices, name="prices"),
    path("settings/accounts/", settings_views.accounts, name="accounts"),
    path("rates/", rates.exchange_rates, name="exchange_rates"),
    path("imports/", imports.imports, name="imports"),
    path("imports/<int:pk>/", imports.import_detail, name="import_detail"),
    path("imports/<int:pk>/rejected.csv", imports.import_rejections_csv, name="import_rejections_csv"),
    path("language/", language.choose_language, name="choose_language"),
    path("overview/spend-chart/", overview.spend_chart, name="overview_spend_chart"),
]
