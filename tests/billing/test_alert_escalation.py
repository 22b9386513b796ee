"""Alerts escalate: a rule that gets worse says so at once, whatever its cooldown.

The defect this starts from: a run-out rule fired at "16.5 days" and sent one email; the
situation then worsened to "wallet runs out within a day" and a wallet at −2.42 USD, and no
further email went out.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing import alerts
from billing.balances import account_balances
from billing.models import AlertKind, AlertRule
from tests.billing.conftest import allocate, ingest, record, top_up
from tests.members import members_with_emails
from usage.models import Account

RECIPIENTS = ["finance@example.com"]


def _day(now: datetime, back: int) -> datetime:
    return datetime.combine((now - timedelta(days=back)).date(), time(9), tzinfo=UTC)


def wallet_burning_one_dollar_a_day(account: Account, now: datetime, *, left: str) -> None:
    """Four weeks of usage charged to the wallet at 1.00 USD a day, `left` USD remaining."""
    ingest(account, *[record(f"w-{back}", _day(now, back), "gpt-4o", 1000, 1000, "1.00") for back in range(1, 29)])
    top_up(account, "start", str(Decimal(left) + 28), now - timedelta(days=30))
    allocate(account, now)


@pytest.fixture
def now() -> datetime:
    return timezone.now()


def test_a_run_out_rule_that_worsens_to_within_a_day_and_a_negative_wallet_emails_again(
    transactional_db, account: Account, now: datetime
):
    wallet_burning_one_dollar_a_day(account, now, left="16.50")
    rule = AlertRule.objects.create(
        account=account,
        name="Runs out within a month",
        kind=AlertKind.RUNOUT_WITHIN,
        threshold=30,
        recipients=members_with_emails(account, RECIPIENTS),
        cooldown_hours=24,
    )
    (first,) = alerts.evaluate_account(account, now=now)
    assert first.check.firing and "Wallet runs out around" in first.check.summary
    assert len(mail.outbox) == 1

    # An hour later a burst of usage has taken the wallet to −2.42 USD.
    later = now + timedelta(hours=1)
    ingest(account, record("burst", now - timedelta(minutes=1), "gpt-4o", 10_000, 10_000, "18.92"))
    allocate(account, later)
    assert account_balances(account, at=later).wallet_balance == Decimal("-2.42")

    (worse,) = alerts.evaluate_account(account, now=later)

    assert worse.check.firing and "(within a day)" in worse.check.summary
    assert len(mail.outbox) == 2, "the rule got worse and nobody was told"
    assert "within a day" in mail.outbox[1].subject
    assert mail.outbox[1].to == RECIPIENTS
    assert AlertRule.objects.get(pk=rule.pk).episodes.count() == 1
