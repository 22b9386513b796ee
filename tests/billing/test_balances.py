"""billing.balances.account_balances: one computation of the balances and their forecast,
shared by every surface while the data behind it stays the same, and recomputed as soon as
it changes (a top-up, a purchase, a void, an allocation refresh) or a plan starts or expires."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from billing.balances import account_balances
from billing.models import PlanPurchase
from billing.services import void_purchase
from tests.billing.conftest import FINANCE, allocate, buy, ingest, record, top_up
from usage.models import Account


def test_reads_without_changes_share_one_moment(account: Account):
    top_up(account, "t", "10.00", timezone.now() - timedelta(days=1))

    first = account_balances(account)
    time.sleep(0.05)
    second = account_balances(account)

    assert second.at == first.at and second.wallet_balance == Decimal("10.00")


def test_a_top_up_is_seen_at_once(account: Account):
    top_up(account, "t1", "10.00", timezone.now() - timedelta(days=1))
    before = account_balances(account)

    top_up(account, "t2", "2.50", timezone.now())

    after = account_balances(account)
    assert after.at > before.at and after.wallet_balance == Decimal("12.50")


def test_a_purchase_and_its_void_are_seen_at_once(account: Account):
    assert account_balances(account).token_balance == 0

    purchase_id = buy(account, "p", 1_000, timezone.now() - timedelta(hours=1), timezone.now() + timedelta(days=9))
    assert account_balances(account).token_balance == 1_000

    void_purchase(PlanPurchase.objects.get(pk=purchase_id), FINANCE, "entered twice")
    assert account_balances(account).token_balance == 0


def test_new_usage_is_seen_once_allocated(account: Account):
    now = timezone.now()
    buy(account, "p", 1_000, now - timedelta(days=2), now + timedelta(days=9))
    assert account_balances(account).token_balance == 1_000

    ingest(account, record("r", now - timedelta(hours=1), "gpt-4o", 300, 100, "0.01"))
    allocate(account, timezone.now())

    assert account_balances(account).token_balance == 600


def test_a_plan_that_expires_leaves_the_balance_at_its_expiry(account: Account):
    buy(account, "short", 1_000, timezone.now() - timedelta(days=1), timezone.now() + timedelta(seconds=1))
    assert account_balances(account).token_balance == 1_000

    time.sleep(1.2)

    assert account_balances(account).token_balance == 0


def test_an_explicit_moment_is_computed_for_that_moment(account: Account):
    now = timezone.now()
    buy(account, "later", 1_000, now + timedelta(days=1), now + timedelta(days=9))

    assert account_balances(account).token_balance == 0
    assert account_balances(account, at=now + timedelta(days=2)).token_balance == 1_000
