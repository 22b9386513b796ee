"""GET /api/v1/balance, POST /api/v1/purchases and POST /api/v1/wallet/entries (docs/api.md)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from billing.models import AuditEvent, PlanPurchase, WalletEntry
from billing.recompute import refresh_allocations
from billing.services import record_manual_balance
from tests.billing.conftest import FINANCE, ingest, record
from usage.models import Membership, TokenScope
from usage.services import create_account, create_api_token

NOW = timezone.now().replace(microsecond=0)


def client_with(account, *scopes: str) -> Client:
    token = create_api_token(account=account, name="script", scopes=list(scopes))[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def billing_client(account) -> Client:
    return client_with(account, TokenScope.BILLING)


@pytest.fixture
def reader(account) -> Client:
    return client_with(account, TokenScope.READ)


def purchase_body(**changes) -> dict:
    return {
        "plan": "Pro 10M",
        "tokens": 10_000_000,
        "price": "20.00",
        "currency": "USD",
        "effective_at": (NOW - timedelta(days=2)).isoformat(),
        "expires_at": (NOW + timedelta(days=28)).isoformat(),
        "models": ["gpt-4o*"],
        "priority": 1,
        "paid_from_wallet": False,
        "idempotency_key": "po-2026-001",
    } | changes


def entry_body(**changes) -> dict:
    return {
        "kind": "top_up",
        "amount": "100.00",
        "currency": "USD",
        "occurred_at": (NOW - timedelta(days=3)).isoformat(),
        "note": "wire transfer",
        "idempotency_key": "tu-001",
    } | changes


def post(client: Client, path: str, body: dict):
    return client.post(f"/api/v1/{path}", body, content_type="application/json")


def test_a_purchase_is_created_once_then_replayed_with_200(billing_client):
    first = post(billing_client, "purchases", purchase_body())
    again = post(billing_client, "purchases", purchase_body())

    assert first.status_code == 201, first.content
    assert again.status_code == 200
    assert again.json() == first.json()
    body = first.json()
    assert body["price"] == "20" and body["tokens"] == 10_000_000 and body["models"] == ["gpt-4o*"]
    assert body["plan"] == "Pro 10M" and body["token_basis"] == "total" and body["voided_at"] is None
    assert PlanPurchase.objects.count() == 1


def test_a_key_reused_for_another_purchase_is_a_409(billing_client):
    post(billing_client, "purchases", purchase_body())

    response = post(billing_client, "purchases", purchase_body(tokens=5))

    assert response.status_code == 409
    assert "idempotency_key" in response.json()["detail"]
    assert PlanPurchase.objects.get().tokens == 10_000_000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": 0.00000000001}, "price"),  # more than 10 decimal places
        ({"price": "twenty"}, "price"),
        ({"tokens": "1000"}, "tokens"),
        ({"tokens": 0}, "tokens"),
        ({"effective_at": "2026-03-01T00:00:00"}, "effective_at"),
        ({"currency": "usd"}, "currency"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_purchases_are_400s_that_name_the_field(billing_client, changes, field):
    response = post(billing_client, "purchases", purchase_body(**changes))

    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert not PlanPurchase.objects.exists()


def test_a_purchase_that_ends_before_it_starts_is_a_400(billing_client):
    response = post(billing_client, "purchases", purchase_body(expires_at=(NOW - timedelta(days=3)).isoformat()))

    assert response.status_code == 400
    assert "expires_at" in response.json()["detail"]


def test_wallet_entries_are_created_replayed_and_refused_like_purchases(billing_client):
    first = post(billing_client, "wallet/entries", entry_body())
    again = post(billing_client, "wallet/entries", entry_body(amount="100"))
    other = post(billing_client, "wallet/entries", entry_body(amount="90.00"))
    negative = post(billing_client, "wallet/entries", entry_body(kind="refund", amount="-3", idempotency_key="r"))
    system_kind = post(billing_client, "wallet/entries", entry_body(kind="usage_charge", idempotency_key="u"))

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert first.json()["amount"] == "100" and first.json()["kind"] == "top_up"
    assert negative.status_code == 400 and "positive" in negative.json()["detail"]
    assert system_kind.status_code == 400 and "kind" in system_kind.json()["detail"]
    assert WalletEntry.objects.count() == 1


def test_an_adjustment_may_be_negative(billing_client, account):
    response = post(billing_client, "wallet/entries", entry_body(kind="adjustment", amount="-12.345"))

    assert response.status_code == 201
    assert WalletEntry.objects.get().amount == Decimal("-12.345")


def test_writes_need_the_billing_scope_and_are_audited_with_the_token(account):
    reader = client_with(account, TokenScope.READ, TokenScope.INGEST)
    billing = client_with(account, TokenScope.BILLING)

    refused = post(reader, "purchases", purchase_body())
    anonymous = Client().post("/api/v1/wallet/entries", entry_body(), content_type="application/json")
    accepted = post(billing, "wallet/entries", entry_body())

    assert (refused.status_code, anonymous.status_code, accepted.status_code) == (403, 401, 201)
    event = AuditEvent.objects.get(action="wallet.recorded")
    assert event.actor_label.startswith("API token 'script'")


def test_the_balance_shows_wallet_plans_in_burn_order_and_the_provider(account, billing_client, reader):
    post(billing_client, "wallet/entries", entry_body())
    post(billing_client, "purchases", purchase_body(paid_from_wallet=True))
    post(billing_client, "purchases", purchase_body(plan="All models", tokens=1000, priority=0, models=[],
                                                    idempotency_key="po-2", price="1"))  # fmt: skip
    ingest(
        account,
        record("r1", NOW - timedelta(days=1), "gpt-4o", 3_000_000, 1_000_000, "4.00"),
        record("r2", NOW - timedelta(hours=5), "claude-sonnet-4", 1500, 500, "0.80"),
    )
    refresh_allocations(account)
    record_manual_balance(account, balance=Decimal("74.50"), taken_at=NOW - timedelta(hours=1), actor=FINANCE)

    body = reader.get("/api/v1/balance").json()

    assert body["account"] == "acme" and body["currency"] == "USD"
    # 100 − 20 (Pro paid from the wallet) − 0.80 × 1000/2000 (claude beyond the 1000-token plan)
    assert body["wallet_balance"] == "79.6"
    assert [(p["name"], p["tokens_used"], p["tokens_remaining"]) for p in body["plans"]] == [
        ("Pro 10M", 4_000_000, 6_000_000),
        ("All models", 1000, 0),
    ]
    assert body["token_balance"] == 6_000_000
    assert body["provider_reported"]["balance"] == "74.5"
    # The forecast (billing.forecast, tested in test_forecast.py): yesterday's 4M gpt tokens a day.
    assert body["burn_rate_tokens_per_day"] == "4000000" and body["projected_runout_at"] is not None
    assert isinstance(body["plans"][0]["projected_unused_at_expiry"], int)
    # A manual account's last reading is the balance finance recorded, as the card says.
    assert body["last_synced_at"].replace("Z", "+00:00") == (NOW - timedelta(hours=1)).isoformat()
    assert body["last_reading_kind"] == "manual" and body["stale_since"] is None


def test_the_balance_of_an_account_with_nothing_yet(reader):
    body = reader.get("/api/v1/balance").json()

    assert body["wallet_balance"] == "0"
    assert body["plans"] == [] and body["token_balance"] == 0 and body["provider_reported"] is None


def test_a_token_reads_only_its_own_account_but_finance_may_choose_among_theirs(account, reader, finance_client):
    other = create_account(name="Other", slug="other", currency="EUR")
    create_account(name="Elsewhere", slug="elsewhere", currency="EUR")
    Membership.objects.create(account=other, user=User.objects.get(username="fiona"))

    assert reader.get("/api/v1/balance", {"account": "other"}).status_code == 403
    body = finance_client.get("/api/v1/balance", {"account": "other"}).json()
    assert (body["account"], body["currency"]) == (other.slug, "EUR")
    refused = finance_client.get("/api/v1/balance", {"account": "elsewhere"})
    assert refused.status_code == 403
    assert "not a member" in refused.json()["detail"]


def test_the_billing_endpoints_are_in_the_openapi_schema(admin_client):
    paths = admin_client.get("/api/v1/openapi.json").json()["paths"]

    assert {"/api/v1/balance", "/api/v1/purchases", "/api/v1/wallet/entries"} <= set(paths)
    assert {"200", "201", "409"} <= set(paths["/api/v1/purchases"]["post"]["responses"])


def test_text_the_database_cannot_store_is_a_400_not_a_500(billing_client):
    response = post(billing_client, "wallet/entries", entry_body(note="nul \x00 byte"))

    assert response.status_code == 400
    assert "note" in response.json()["detail"]


# --- Instants with unusual offsets, and near the calendar's edges ------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("purchases", lambda v: purchase_body(effective_at=v), "effective_at"),
        ("purchases", lambda v: purchase_body(expires_at=v), "expires_at"),
        ("wallet/entries", lambda v: entry_body(occurred_at=v), "occurred_at"),
    ],
)
@pytest.mark.parametrize(
    "instant",
    [
        "0001-01-01T00:00:00+21:05",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:00:00-02:00",
    ],
)
def test_an_instant_outside_the_calendar_in_utc_is_a_400_naming_the_field(billing_client, path, body, field, instant):
    response = post(billing_client, path, body(instant))

    assert response.status_code == 400, response.content
    assert field in response.content.decode()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("purchases", lambda v: purchase_body(effective_at=v), "effective_at"),
        ("wallet/entries", lambda v: entry_body(occurred_at=v), "occurred_at"),
    ],
)
def test_an_instant_with_an_unusual_offset_is_stored_and_returned_in_utc(billing_client, path, body, field):
    local = (NOW - timedelta(days=2)).astimezone(timezone.get_fixed_timezone(21 * 60 + 5))

    response = post(billing_client, path, body(local.isoformat()))

    assert response.status_code == 201, response.content
    returned = response.json()[field]
    assert returned.endswith(("Z", "+00:00")), returned
    assert timezone.datetime.fromisoformat(returned.replace("Z", "+00:00")) == local
    stored = (PlanPurchase if path == "purchases" else WalletEntry).objects.get()
    assert getattr(stored, field).utcoffset() == timedelta(0) and getattr(stored, field) == local
