"""The model catalogue on the pages: its own page, the Models page and a model's page, the
Requests filter and the price book's warnings. The catalogue is written through its service,
as a sync would write it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from usage.catalogue import services
from usage.catalogue.demo import seed_demo_catalogue
from usage.catalogue.listing import ListedModel, Listing, ProviderPrice
from usage.catalogue.models import CatalogueOutcome, CatalogueSync
from usage.models import Account, ModelPrice, PriceSource
from usage.pricing.list_prices import BEGINNING
from usage.schemas import validate_records
from usage.services import record_usage


def sync(account: Account, *models: ListedModel, now=None) -> CatalogueSync:
    run = services.start_sync(account, now=now)
    assert run is not None
    return services.apply_listing(run, Listing(models=models, source="/v1/models"), now=now)


def used(account: Account, model: str, count: int = 1, tokens: int = 1_000_000) -> None:
    at = timezone.now() - timedelta(hours=2)
    records: list[dict[str, Any]] = [
        {
            "request_id": f"{model}-{n}",
            "occurred_at": (at - timedelta(minutes=n)).isoformat(),
            "model": model,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0},
        }
        for n in range(count)
    ]
    valid, rejected = validate_records(records)
    assert not rejected
    record_usage(account, valid, source="api")


GPT = ListedModel(
    "gpt-4o",
    owned_by="openai",
    context_length=128_000,
    price=ProviderPrice("USD", Decimal("2.5"), Decimal("1.25"), Decimal("10")),
)
DEEPSEEK = ListedModel("deepseek-chat", owned_by="deepseek", context_length=64_000)
O3 = ListedModel("o3-mini", price=ProviderPrice("USD", Decimal("1.1"), None, Decimal("4.4")))


@pytest.fixture
def catalogue(account: Account) -> Account:
    """Three models listed a day ago; deepseek-chat dropped from the list since; calls to
    gpt-4o (priced by the provider) and deepseek-chat (never priced), and to a model never listed."""
    sync(account, GPT, DEEPSEEK, O3, now=timezone.now() - timedelta(days=1))
    sync(account, GPT, O3)
    used(account, "gpt-4o", 3)
    used(account, "deepseek-chat", 2)
    used(account, "legacy-model", 1)
    return account


def row_of(page: str, model: str) -> str:
    match = re.search(rf'<tr data-model="{re.escape(model)}".*?</tr>', page, re.S)
    assert match, f"no row for {model}"
    return match.group(0)


def test_the_catalogue_page_lists_state_context_price_dates_and_usage(catalogue, engineer_client):
    page = engineer_client.get("/catalogue/").content.decode()

    gpt = row_of(page, "gpt-4o")
    assert 'data-state="listed"' in gpt and "Listed" in gpt and "128,000" in gpt
    assert "2.50" in gpt and "1.25" in gpt and "10.00" in gpt and "Provider" in gpt
    assert re.search(r'<td class="num">3</td>', gpt)  # requests in the period
    assert "7.50" in gpt  # 3 calls × 1M prompt tokens × 2.5
    o3 = row_of(page, "o3-mini")
    assert 'data-state="listed"' in o3 and "catalogue-row--flagged" not in o3
    removed = row_of(page, "deepseek-chat")
    assert 'data-state="removed" class="catalogue-row--flagged"' in removed and "No price" in removed
    never = row_of(page, "legacy-model")
    assert 'data-state="unlisted" class="catalogue-row--flagged"' in never and "Not listed" in never
    # Flagged rows come first, then the listed models by name.
    assert [m for m in re.findall(r'<tr data-model="([^"]+)"', page)] == [
        "deepseek-chat",
        "legacy-model",
        "gpt-4o",
        "o3-mini",
    ]
    assert 'id="catalogue-flagged"' in page and "2 models used in this period are not in the provider's list" in page


def test_before_any_successful_sync_the_catalogue_is_unknown_and_flags_nothing(account, engineer_client):
    used(account, "gpt-4o")
    run = services.start_sync(account)
    services.finish_failed(run, CatalogueOutcome.CREDENTIALS_REJECTED, "GET /v1/models answered HTTP 401")

    page = engineer_client.get("/catalogue/").content.decode()
    models_page = engineer_client.get("/models/").content.decode()

    assert "The last sync of the model list failed" in page and "HTTP 401" in page
    assert "Never read" in page and 'data-model="gpt-4o"' not in page
    assert 'id="unlisted-models"' not in models_page


def test_a_failed_sync_keeps_the_catalogue_and_says_so(catalogue, engineer_client):
    run = services.start_sync(catalogue)
    services.finish_failed(run, CatalogueOutcome.BAD_ANSWER, "GET /v1/models answered with invalid JSON")

    page = engineer_client.get("/catalogue/").content.decode()

    assert "The last sync of the model list failed" in page and "as the last successful sync left it" in page
    assert 'data-model="gpt-4o" data-state="listed"' in page


def test_the_catalogue_page_is_for_engineers(catalogue, finance_client, admin_client):
    assert finance_client.get("/catalogue/").status_code == 403
    assert admin_client.get("/catalogue/").status_code == 200


def test_the_models_page_flags_models_used_but_not_listed_and_links_the_catalogue(catalogue, engineer_client):
    page = engineer_client.get("/models/").content.decode()

    notice = re.search(r'<div class="banner banner--error" role="alert" id="unlisted-models">.*?</div>', page, re.S)
    assert notice and "deepseek-chat (removed" in notice.group(0) and "legacy-model (never listed)" in notice.group(0)
    assert ">removed</a>" in page and ">not listed</a>" in page
    assert 'id="catalogue-link"' in page
    assert page.count("status status--error") == 2  # gpt-4o is listed: no badge


def test_a_models_page_flags_its_removal_and_shows_catalogue_and_price_history(catalogue, engineer_client):
    detail = engineer_client.get("/models/deepseek-chat/").content.decode()
    card = engineer_client.get("/models/gpt-4o/cards/catalogue/").content.decode()

    assert 'id="model-unlisted"' in detail and "called 2 times in this period" in detail
    assert 'id="card-catalogue"' in detail  # the card loads on its own
    assert "Listed" in card and "128,000 tokens" in card and 'id="model-price-history"' in card
    assert "Always" in card and 'data-source="provider"' in card


def test_a_listed_model_without_usage_has_a_page(catalogue, engineer_client):
    assert engineer_client.get("/models/o3-mini/").status_code == 200
    assert engineer_client.get("/models/never-heard-of/").status_code == 404


def test_the_requests_filter_offers_listed_models_not_used_yet(catalogue, engineer_client):
    page = engineer_client.get("/requests/").content.decode()

    select = re.search(r'<select [^>]*name="model".*?</select>', page, re.S).group(0)
    options = re.findall(r'<option value="([^"]*)"', select)
    assert options == ["", "deepseek-chat", "gpt-4o", "legacy-model", "o3-mini"]


def test_the_price_book_warns_of_a_listed_model_without_a_price_before_any_usage(account, admin_client):
    sync(account, GPT, ListedModel("qwen-max"), ListedModel("mj-imagine", price_note="priced per request"))

    page = admin_client.get("/settings/prices/").content.decode()

    card = re.search(r'<section class="card" aria-labelledby="listed-unpriced-title".*?</section>', page, re.S)
    assert card, "no warning card"
    assert re.findall(r"<li><a [^>]*>([^<]+)</a></li>", card.group(0)) == ["mj-imagine", "qwen-max"]


def test_provider_prices_show_in_the_price_book_with_their_source(catalogue, admin_client):
    page = admin_client.get("/settings/prices/?q=o3-mini").content.decode()

    row = re.search(r'<tr data-price="\d+" data-model="o3-mini">.*?</tr>', page, re.S).group(0)
    assert "Provider" in row and "Always" in row and "Acme" in row
    assert ModelPrice.objects.get(model_pattern="o3-mini").source == PriceSource.PROVIDER
    assert ModelPrice.objects.get(model_pattern="o3-mini").effective_from == BEGINNING


def test_the_demo_catalogue_shows_a_removed_model_in_use_and_is_seeded_once(account, engineer_client):
    used(account, "qwen-max")

    assert seed_demo_catalogue(account) == 2
    assert seed_demo_catalogue(account) == 0

    assert CatalogueSync.objects.filter(account=account).count() == 2
    page = engineer_client.get("/catalogue/").content.decode()
    assert 'data-model="qwen-max" data-state="removed" class="catalogue-row--flagged"' in page
    assert 'data-model="gpt-4.1" data-state="listed"' in page


def test_catalogue_times_are_shown_in_the_dashboards_time_zone(account, engineer_client, settings):
    settings.DASHBOARD_TIME_ZONE = "Asia/Shanghai"
    seen = datetime(2026, 3, 1, 20, 30, tzinfo=UTC)  # 2 March, 04:30 in Shanghai
    sync(account, GPT, now=seen)

    row = row_of(engineer_client.get("/catalogue/").content.decode(), "gpt-4o")

    assert "2 Mar 2026, 04:30" in row and "1 Mar 2026" not in row
