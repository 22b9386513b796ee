"""Settings over HTTP: API tokens (shown once, usable, revocable), the price book (a new
price reprices in the background, history kept), accounts, and the repricing banner."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.test_celery_worker import worker  # noqa: F401  (a real Celery worker, as a fixture)
from tests.usage.test_pricing import ingest, money, rollup_cost_and_unpriced, usage_record
from usage import rollups
from usage.models import Account, ApiToken, ModelPrice, PriceSource, RepricingRun, UsageRecord
from usage.pricing.list_prices import BEGINNING
from usage.services import create_account, create_api_token

SETTINGS_URLS = [
    "/settings/",
    "/settings/prices/",
    "/settings/accounts/",
    "/settings/tokens/1/revoke/",
]
TOKEN_SHAPE = re.compile(r"toki_[A-Za-z0-9_-]{20,}")
MILLION = 1_000_000


def usage_post(secret: str, request_id: str = "r-1") -> Any:
    body = {"records": [{"request_id": request_id, "occurred_at": timezone.now().isoformat(), "model": "m"}]}
    return Client().post("/api/v1/usage", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}")


def create_token(client: Client, owner: Account, **overrides: Any) -> Any:
    form = {"name": "log shipper", "account": owner.pk, "scopes": ["ingest"]} | overrides
    return client.post("/settings/tokens/new/", form)


# --- Who may open Settings ------------------------------------------------------------------


@pytest.mark.parametrize("client_fixture", ["engineer_client", "finance_client", "roleless_client"])
@pytest.mark.parametrize("url", SETTINGS_URLS)
def test_only_admins_may_open_settings(account, client_fixture: str, url: str, request: pytest.FixtureRequest) -> None:
    client: Client = request.getfixturevalue(client_fixture)
    token, _ = create_api_token(account=account, name="t", scopes=["read"])

    assert client.get(url.replace("/1/", f"/{token.pk}/")).status_code == 403
    assert client.post(url.replace("/1/", f"/{token.pk}/")).status_code == 403
    assert create_token(client, account).status_code == 403
    assert not ApiToken.objects.filter(name="log shipper").exists()
    token.refresh_from_db()
    assert token.is_active


def test_admins_open_every_settings_section(account, admin_client: Client) -> None:
    for url in SETTINGS_URLS[:3]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]


# --- API tokens -------------------------------------------------------------------------------


def test_a_created_token_is_shown_once_and_then_authenticates_the_ingestion_api(account, admin_client) -> None:
    response = create_token(admin_client, account)

    assert response.status_code == 201
    shown = TOKEN_SHAPE.findall(response.content.decode())
    assert len(set(shown)) == 1
    secret = shown[0]
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(name="log shipper")
    assert (token.account, token.scopes, token.revoked_at) == (account, ["ingest"], None)
    assert secret not in token.token_hash and token.token_hash != secret
    # Never again: not on the list, nowhere in the settings pages.
    for url in SETTINGS_URLS[:3]:
        assert secret not in admin_client.get(url).content.decode()

    assert usage_post(secret).status_code == 200
    assert UsageRecord.objects.filter(account=account, request_id="r-1").exists()


def test_the_last_used_time_is_shown_after_the_token_is_used(account, admin_client: Client) -> None:
    secret = TOKEN_SHAPE.findall(create_token(admin_client, account).content.decode())[0]
    row_before = _token_row(admin_client.get("/settings/").content.decode(), "log shipper")
    assert "Never" in row_before

    usage_post(secret)

    token = ApiToken.objects.get(name="log shipper")
    assert token.last_used_at is not None
    row_after = _token_row(admin_client.get("/settings/").content.decode(), "log shipper")
    assert "Never" not in row_after
    assert token.last_used_at.strftime("%Y-%m-%dT%H:%M") in row_after  # the <time datetime=…> of last use


def _token_row(page: str, name: str) -> str:
    for row in re.findall(r"<tr data-token=.*?</tr>", page, flags=re.S):
        if name in row:
            return row.split('class="nowrap last-used">', 1)[1]
    raise AssertionError(f"no row for token {name!r}")


def test_a_revoked_token_gets_401_and_shows_as_revoked(account, admin_client: Client) -> None:
    secret = TOKEN_SHAPE.findall(create_token(admin_client, account).content.decode())[0]
    token = ApiToken.objects.get(name="log shipper")

    confirm = admin_client.get(f"/settings/tokens/{token.pk}/revoke/")
    assert confirm.status_code == 200 and b"Revoke token" in confirm.content
    token.refresh_from_db()
    assert token.is_active  # asking is not revoking

    response = admin_client.post(f"/settings/tokens/{token.pk}/revoke/")

    assert response.status_code == 302 and response["Location"] == "/settings/"
    assert usage_post(secret, "r-2").status_code == 401
    page = admin_client.get("/settings/").content.decode()
    assert "Revoked" in page and "Revoked “log shipper”" in page


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "Name"),
        ({"name": "n" * 201}, "Name"),
        ({"scopes": []}, "Scopes"),
        ({"scopes": ["ingest", "root"]}, "Scopes"),
        ({"account": "999999"}, "Account"),
        ({"account": "not-a-number"}, "Account"),
    ],
)
def test_token_form_errors_name_the_field_and_create_nothing(account, admin_client, overrides, field) -> None:
    response = create_token(admin_client, account, **overrides)

    assert response.status_code == 400
    assert f'<p class="field__error">{field}: ' in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_a_token_that_does_not_exist_is_a_404(admin_client: Client) -> None:
    assert admin_client.post("/settings/tokens/424242/revoke/").status_code == 404


# --- Accounts -----------------------------------------------------------------------------


def test_accounts_list_says_whether_credentials_are_set_and_never_shows_them(account, admin_client) -> None:
    secret = "sk-live-abcdefghijklmnopqrstuvwxyz-9876"
    account.set_credentials({"api_key": secret})
    account.save()
    create_account(name="Bare", slug="bare", currency="EUR")

    response = admin_client.get("/settings/accounts/")

    page = response.content.decode()
    assert "Acme" in page and "Bare" in page and "EUR" in page
    assert secret not in page and secret[-4:] not in page and account.credentials_encrypted not in page
    assert page.count(">Set<") == 1 and page.count(">Not set<") == 1


# --- Price book ---------------------------------------------------------------------------


def qwen_calls(account: Account) -> list[tuple[int, int]]:
    when = timezone.now() - timedelta(days=2)
    calls = [(1_000, 500), (2_000, 0), (0, 1_000)]
    ingest(
        account,
        *(
            usage_record(f"q{i}", model="qwen-max", prompt=p, completion=c, at=when + timedelta(hours=i))
            for i, (p, c) in enumerate(calls)
        ),
    )
    return calls


def price_form(**overrides: Any) -> dict[str, Any]:
    return {
        "model_pattern": "qwen-max",
        "account": "",
        "currency": "USD",
        "input_per_mtok": "1.60",
        "cached_input_per_mtok": "",
        "output_per_mtok": "6.40",
        "effective_from": "",
    } | overrides


def test_the_unpriced_warning_links_admins_to_the_price_form_prefilled(account, admin_client, finance_client):
    qwen_calls(account)

    admin_overview = admin_client.get("/").content.decode()
    finance_overview = finance_client.get("/").content.decode()

    assert 'href="/settings/prices/?model=qwen-max"' in admin_overview
    assert "/settings/prices/" not in finance_overview and "qwen-max" in finance_overview
    form = admin_client.get("/settings/prices/?model=qwen-max")
    assert form.status_code == 200
    assert 'value="qwen-max"' in form.content.decode()
    assert form.context["form"].initial["currency"] == "USD"


def test_adding_a_price_for_an_unpriced_model_reprices_its_records(account, admin_client, repricing_runs_after_commit):
    calls = qwen_calls(account)
    assert rollup_cost_and_unpriced(account, "qwen-max") == (Decimal(0), len(calls))

    with repricing_runs_after_commit():
        response = admin_client.post("/settings/prices/", price_form())

    assert response.status_code == 302 and response["Location"] == "/settings/prices/?q=qwen-max"
    expected = sum((Decimal(p) * Decimal("1.60") + Decimal(c) * Decimal("6.40")) / MILLION for p, c in calls)
    assert rollup_cost_and_unpriced(account, "qwen-max") == (money(expected), 0)
    assert rollups.verify(account) == []
    price = ModelPrice.objects.get(model_pattern="qwen-max")
    assert (price.source, price.effective_from, price.effective_to) == (PriceSource.MANUAL, BEGINNING, None)


def test_a_new_price_from_a_moment_closes_the_old_one_there_and_keeps_history(
    account, admin_client, repricing_runs_after_commit, settings
) -> None:
    settings.DASHBOARD_TIME_ZONE = "Europe/Paris"
    calls = qwen_calls(account)  # two days ago, hours 0-2
    with repricing_runs_after_commit():
        admin_client.post("/settings/prices/", price_form())
    first_call = UsageRecord.objects.get(request_id="q0").occurred_at
    change_at = (first_call + timedelta(minutes=30)).replace(second=0, microsecond=0)
    local = change_at.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%dT%H:%M")

    with repricing_runs_after_commit():
        response = admin_client.post(
            "/settings/prices/", price_form(input_per_mtok="3.20", output_per_mtok="12.80", effective_from=local)
        )

    assert response.status_code == 302
    old, new = ModelPrice.objects.filter(model_pattern="qwen-max").order_by("effective_from")
    assert old.effective_to == change_at == new.effective_from  # typed in Paris time, stored in UTC
    assert new.effective_to is None
    (p0, c0), *later = calls
    expected = (Decimal(p0) * Decimal("1.60") + Decimal(c0) * Decimal("6.40")) / MILLION + sum(
        (Decimal(p) * Decimal("3.20") + Decimal(c) * Decimal("12.80")) / MILLION for p, c in later
    )
    assert rollup_cost_and_unpriced(account, "qwen-max") == (money(expected), 0)
    assert rollups.verify(account) == []
    page = admin_client.get("/settings/prices/?q=qwen").content.decode()
    assert page.count('data-model="qwen-max"') == 2
    assert "In effect" in page and "Ended" in page


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model_pattern": "   "}, "Model"),
        ({"input_per_mtok": "-1"}, "Input per 1M tokens"),
        ({"input_per_mtok": "abc"}, "Input per 1M tokens"),
        ({"output_per_mtok": "1e999"}, "Output per 1M tokens"),
        ({"output_per_mtok": ""}, "Output per 1M tokens"),
        ({"cached_input_per_mtok": "9.99"}, "Cached input per 1M tokens"),
        ({"currency": "dollars"}, "Currency"),
        ({"currency": "EUR", "account": "ACCOUNT"}, "Currency"),
        ({"account": "999999"}, "Account"),
        ({"effective_from": "yesterday"}, "Effective from"),
        ({"effective_from": "1999-12-31T23:00"}, "Effective from"),
        ({"effective_from": "9999-99-99T99:99"}, "Effective from"),
    ],
)
def test_price_form_errors_name_the_field_and_add_nothing(account, admin_client, overrides, field) -> None:
    if overrides.get("account") == "ACCOUNT":
        overrides["account"] = str(account.pk)

    response = admin_client.post("/settings/prices/", price_form(**overrides))

    assert response.status_code == 400
    assert f'<p class="field__error">{field}: ' in response.content.decode()
    assert not ModelPrice.objects.exists()


def test_a_second_price_starting_at_the_same_moment_is_refused(account, admin_client) -> None:
    assert admin_client.post("/settings/prices/", price_form()).status_code == 302

    response = admin_client.post("/settings/prices/", price_form(input_per_mtok="9"))

    assert response.status_code == 400
    assert "Effective from: A price for this model already starts at that moment" in response.content.decode()
    assert ModelPrice.objects.count() == 1


def test_the_price_list_searches_and_pages_and_never_breaks_on_odd_queries(account, admin_client) -> None:
    for n in range(105):
        ModelPrice.objects.create(
            model_pattern=f"model-{n:03}", input_per_mtok=1, output_per_mtok=2, effective_from=BEGINNING
        )

    assert admin_client.get("/settings/prices/?q=model-10").context["page"].paginator.count == 5  # 100-104
    assert len(admin_client.get("/settings/prices/").context["page"].object_list) == 100
    assert len(admin_client.get("/settings/prices/?page=2").context["page"].object_list) == 5
    for query in ["?page=x", "?page=-3", "?model=" + "m" * 500]:
        assert admin_client.get("/settings/prices/" + query).status_code == 200, query


# --- The repricing banner -----------------------------------------------------------------


def test_the_banner_shows_while_a_repricing_run_is_running_and_goes_when_it_ends(account, engineer_client) -> None:
    assert b"re-costing" not in engineer_client.get("/keys/").content
    run = RepricingRun.objects.create(account=account, total=12_000, done=4_500)

    page = engineer_client.get("/keys/").content.decode()

    assert "Prices changed: re-costing 4,500 of 12,000 records…" in page
    RepricingRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
    assert b"re-costing" not in engineer_client.get("/keys/").content


def test_a_run_whose_worker_died_is_not_shown(account, engineer_client) -> None:
    long_ago = timezone.now() - RepricingRun.STALE_AFTER - timedelta(minutes=1)
    RepricingRun.objects.create(account=account, total=10, done=1, started_at=long_ago, updated_at=long_ago)

    assert b"re-costing" not in engineer_client.get("/keys/").content


def test_another_accounts_run_and_anonymous_visitors_get_no_banner(account, engineer_client) -> None:
    other = create_account(name="Other", slug="other")
    RepricingRun.objects.create(account=other, total=10, done=1)

    assert b"re-costing" not in engineer_client.get("/keys/").content
    assert b"re-costing" not in Client().get("/login/").content


def test_the_banner_costs_one_query_on_pages_and_none_on_htmx_fragments(account, engineer_client) -> None:
    RepricingRun.objects.create(account=account, total=10, done=1)

    with CaptureQueriesContext(connection) as page:
        assert b"re-costing" in engineer_client.get("/keys/").content
    with CaptureQueriesContext(connection) as fragment:
        assert b"re-costing" not in engineer_client.get("/keys/", headers={"HX-Request": "true"}).content

    def runs(queries: CaptureQueriesContext) -> int:
        return sum("usage_repricingrun" in q["sql"] for q in queries.captured_queries)

    assert (runs(page), runs(fragment)) == (1, 0)


# --- A real worker --------------------------------------------------------------------------


def test_a_real_worker_reprices_after_a_price_is_added_in_settings(
    worker,  # noqa: F811
    admin_client_tx: Client,
) -> None:
    account = Account.objects.get(slug="acme-tx")
    qwen_calls(account)

    response = admin_client_tx.post("/settings/prices/", price_form())
    assert response.status_code == 302

    deadline = time.monotonic() + 40
    while rollup_cost_and_unpriced(account, "qwen-max")[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rollup_cost_and_unpriced(account, "qwen-max")[1] == 0, "the worker did not reprice within 40 s"
    assert rollups.verify(account) == []
    assert not RepricingRun.objects.filter(account=account, finished_at__isnull=True).exists()


@pytest.fixture
def admin_client_tx(transactional_db: None, make_user: Callable[..., Any]) -> Client:
    from toki_dashboard.roles import Role

    create_account(name="Acme", slug="acme-tx", currency="USD")
    client = Client()
    client.force_login(make_user("ada-tx", Role.ADMIN))
    return client
