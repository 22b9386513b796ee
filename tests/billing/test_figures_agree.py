"""Observed defects: one fact read different values on different surfaces, and some states
read as "fine" when they were not. Each test reads the figure where people see it (page
HTML, the htmx card, the banner, /api/v1/balance, the alert email) and compares the
surfaces with each other or with what the test put in."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import alerts
from billing.models import AlertKind, AlertRule
from billing.services import record_manual_balance
from tests.billing.conftest import FINANCE, allocate, buy, ingest, record, top_up
from tests.members import members_with_emails
from usage.models import Account, TokenScope
from usage.services import create_api_token

PLANS = reverse("billing:plans")
CARD = reverse("billing:balance_card")


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no element {element_id}"
    return re.sub(r"\s+", " ", match.group(1)).strip()


def element(html: str, element_id: str) -> str:
    """The opening tag of an element, with its classes."""
    match = re.search(rf'<[^>]*id="{element_id}"[^>]*>', html)
    assert match, f"no element {element_id}"
    return match.group(0)


def reader_for(account: Account) -> Client:
    token = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def email_row(message, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}: (.*)$", message.body, re.M)
    assert match, f"no {label!r} in the email:\n{message.body}"
    return match.group(1)


# --- One usable token balance -----------------------------------------------------------------


@pytest.fixture
def plan_for_a_model_not_in_use(transactional_db, account: Account) -> int:
    """GPT traffic on a GPT plan, and a Claude plan bought but not used yet."""
    now = timezone.now()
    start = now - timedelta(days=5)
    buy(account, "gpt", 500_000, start, start + timedelta(days=30), models=["gpt-4o*"])
    buy(account, "claude", 900_000, start, start + timedelta(days=30), models=["claude-*"])
    top_up(account, "t", "25.00", start)
    ingest(account, record("r1", now - timedelta(days=1), "gpt-4o-mini", 4_000, 1_000, "0.01"))
    allocate(account, now)
    return 500_000 - 5_000 + 900_000


def test_the_usable_token_balance_is_the_same_on_the_page_the_card_the_api_and_the_alert(
    plan_for_a_model_not_in_use: int, account: Account, finance_client: Client
):
    expected = plan_for_a_model_not_in_use
    AlertRule.objects.create(
        account=account,
        name="Tokens low",
        kind=AlertKind.TOKEN_BALANCE_TOKENS,
        threshold=10_000_000,
        recipients=members_with_emails(account, ["finance@example.com"]),
    )
    alerts.evaluate_account(account)

    page = finance_client.get(PLANS).content.decode()
    card = finance_client.get(CARD, HTTP_HX_REQUEST="true").content.decode()
    api = reader_for(account).get("/api/v1/balance").json()
    (message,) = mail.outbox

    assert text_of(page, "token-balance").startswith(f"{expected:,}")
    assert text_of(card, "balance-card-tokens").startswith(f"{expected:,}")
    assert api["token_balance"] == expected
    assert email_row(message, "Tokens left").startswith(f"{expected:,} of ")
    assert f"Token balance {expected:,} tokens" in message.subject


# --- Projected unused tokens at one moment -------------------------------------------------------


@pytest.fixture
def pack_expiring_unused(transactional_db, account: Account) -> int:
    """A busy pack expiring in three days: its projected unused tokens move with every second."""
    now = timezone.now()
    pack = buy(account, "pack", 200_000_000, now - timedelta(days=20), now + timedelta(days=3), models=["deepseek-*"])
    ingest(
        account,
        *[
            record(f"d-{back}-{n}", now - timedelta(days=back, hours=n), "deepseek-chat", 250_000, 100_000, "0.10")
            for back in range(1, 15)
            for n in range(10)
        ],
    )
    allocate(account, now)
    AlertRule.objects.create(
        account=account,
        name="Plan wasted",
        kind=AlertKind.PLAN_EXPIRING_UNUSED,
        threshold=10,
        days=7,
        recipients=members_with_emails(account, ["finance@example.com"]),
    )
    return pack


def test_projected_unused_tokens_read_the_same_in_the_table_the_api_the_banner_and_the_email(
    pack_expiring_unused: int, account: Account, finance_client: Client
):
    alerts.evaluate_account(account)
    time.sleep(1.0)  # the pages are opened a moment after the evaluation, as people do

    page = finance_client.get(PLANS).content.decode()
    api = reader_for(account).get("/api/v1/balance").json()
    (message,) = mail.outbox

    shown = text_of(page, f"projected-unused-{pack_expiring_unused}")
    (plan,) = [p for p in api["plans"] if p["id"] == pack_expiring_unused]
    assert shown == f"{plan['projected_unused_at_expiry']:,}"
    assert f"({shown} tokens)" in message.subject
    banner = re.search(r'id="alert-banner".*?</div>', page, re.S)
    assert banner and f"({shown} tokens)" in banner.group(0)


# --- States that tell the truth -------------------------------------------------------------------


def test_a_negative_wallet_is_a_warning_on_the_plans_page_and_the_card(account: Account, finance_client: Client):
    now = timezone.now()
    top_up(account, "t", "1.00", now - timedelta(days=3))
    ingest(account, record("r", now - timedelta(days=1), "gpt-4o", 10_000, 2_000, "3.42"))
    allocate(account, now)

    page = finance_client.get(PLANS).content.decode()
    card = finance_client.get(CARD, HTTP_HX_REQUEST="true").content.decode()

    assert text_of(page, "wallet-balance").startswith("-2.42")
    assert "metric--danger" in element(page, "wallet-balance-card")
    assert "metric--danger" in element(card, "balance-card-wallet-card")


def test_a_manual_reading_says_so_with_its_age_and_the_api_reports_the_same_moment(
    account: Account, finance_client: Client
):
    taken = timezone.now().replace(microsecond=0) - timedelta(hours=8)
    record_manual_balance(account, balance=12, taken_at=taken, actor=FINANCE)

    card = finance_client.get(CARD, HTTP_HX_REQUEST="true").content.decode()
    api = reader_for(account).get("/api/v1/balance").json()

    assert text_of(card, "balance-card-sync") == "Manual reading"
    assert text_of(card, "balance-card-sync-detail") == "manual reading, 8 hours ago"
    assert "Up to date" not in card
    assert api["last_synced_at"] is not None
    assert api["last_synced_at"].replace("Z", "+00:00") == taken.isoformat()


def test_a_sync_older_than_twice_its_interval_is_stale_since_that_moment(account: Account, finance_client: Client):
    from billing.models import SyncState

    account.provider = "newapi_console"
    account.sync_interval_minutes = 5
    account.save()
    success = timezone.now() - timedelta(minutes=11)
    SyncState.objects.create(account=account, last_success_at=success)

    card = finance_client.get(CARD, HTTP_HX_REQUEST="true").content.decode()

    assert text_of(card, "balance-card-sync") == "Stale"
    stale_since = timezone.localtime(success + timedelta(minutes=10))
    assert f"stale since {stale_since:%H:%M}" in text_of(card, "balance-card-sync-detail")
