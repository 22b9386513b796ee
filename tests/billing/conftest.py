from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.audit import Actor
from billing.recompute import refresh_allocations
from billing.services import PurchaseData, WalletEntryData, record_purchase, record_wallet_entry
from tests.billing.fake_console import ACCESS_TOKEN, RELAY_KEY, USER_ID, FakeConsole
from usage.models import Account, Provider
from usage.schemas import validate_records
from usage.services import record_usage

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FINANCE = Actor.system("tests")


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A moment of March 2026 (day 1 is T0)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def record(request_id: str, occurred_at: datetime, model: str, prompt: int, completion: int, cost: str | None, **extra):
    body = {
        "request_id": request_id,
        "occurred_at": occurred_at.isoformat(),
        "model": model,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }
    if cost is not None:
        body["cost"] = cost
    return body | extra


def ingest(account: Account, *records: dict) -> None:
    valid, rejected = validate_records(list(records))
    assert not rejected, rejected
    record_usage(account, valid, source="api")


def buy(account: Account, key: str, tokens: int, start: datetime, end: datetime, **fields) -> int:
    data = PurchaseData(
        plan=fields.pop("plan", key),
        tokens=tokens,
        price=Decimal(fields.pop("price", "10")),
        currency=fields.pop("currency", account.currency),
        effective_at=start,
        expires_at=end,
        idempotency_key=key,
        **fields,
    )
    return record_purchase(account, data, FINANCE)[0].pk


def top_up(account: Account, key: str, amount: str, when: datetime, kind: str = "top_up") -> int:
    data = WalletEntryData(
        kind=kind, amount=Decimal(amount), currency=account.currency, occurred_at=when, idempotency_key=key
    )
    return record_wallet_entry(account, data, FINANCE)[0].pk


def allocate(account: Account, now: datetime) -> None:
    refresh_allocations(account, now=now)


@pytest.fixture
def console() -> Iterator[FakeConsole]:
    with FakeConsole() as fake:
        yield fake


@pytest.fixture
def fast_sync(settings) -> None:
    settings.BILLING_SYNC_TIMEOUT_SECONDS = 0.5
    settings.BILLING_SYNC_RETRY_BASE_SECONDS = 0.05
    settings.BILLING_SYNC_RETRY_MAX_SECONDS = 0.2


@pytest.fixture
def newapi_account(account: Account, console: FakeConsole, fast_sync) -> Account:
    account.provider = Provider.NEWAPI_CONSOLE
    account.base_url = console.base_url
    account.set_credentials({"access_token": ACCESS_TOKEN, "user_id": str(USER_ID)})
    account.save()
    return account


@pytest.fixture
def relay_account(account: Account, console: FakeConsole, fast_sync) -> Account:
    account.provider = Provider.OPENAI_BILLING
    account.base_url = console.base_url
    account.set_credentials({"api_key": RELAY_KEY})
    account.save()
    return account


@pytest.fixture
def staff_client(db, django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests")
    client = Client()
    client.force_login(user)
    client.user = user
    return client
