"""Alerts escalate and recover: a rule that gets worse says so at once, whatever its cooldown;
falling back says nothing; resolving says so once; new accounts start with the standard rules.

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
from billing.models import AlertKind, AlertNotification, AlertRule, ChannelKind, NotificationKind
from billing.notify.channels import create_channel
from tests.billing.conftest import allocate, ingest, record, top_up
from tests.members import members_with_emails
from usage.models import Account
from usage.services import create_account

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

    # Below zero the wallet has already run out: not "within a day", which reads as money left until then.
    assert worse.check.firing and worse.check.summary == "Wallet has already run out (at or below zero)"
    assert worse.check.tier == len(worse.check.tiers)
    assert len(mail.outbox) == 2, "the rule got worse and nobody was told"
    assert "already run out" in mail.outbox[1].subject
    assert mail.outbox[1].to == RECIPIENTS
    assert AlertRule.objects.get(pk=rule.pk).episodes.count() == 1


def wallet_rule(account: Account, **fields) -> AlertRule:
    return AlertRule.objects.create(
        account=account,
        name="Wallet low",
        kind=AlertKind.WALLET_BELOW,
        threshold=10,
        tiers=["10", "5", "0"],
        recipients=members_with_emails(account, RECIPIENTS),
        cooldown_hours=24,
        **fields,
    )


def move_wallet(account: Account, key: str, amount: str, when: datetime) -> None:
    top_up(account, key, amount, when, kind="adjustment")


def test_tiers_escalate_at_once_fall_back_quietly_and_resolve_once(transactional_db, account: Account, now: datetime):
    start = now - timedelta(hours=2)
    rule = wallet_rule(account)
    steps = [  # (wallet change, what the email says, or None)
        ("8", "[Acme] Wallet 8.00 USD"),  # below 10: firing, warning
        ("-4", "[Acme] Worse (high): Wallet 4.00 USD"),  # below 5: at once, within the cooldown
        ("3", None),  # back to 7: milder, nothing to tell
        ("-3", None),  # 4 again: that tier was told already
        ("-5", "[Acme] Worse (critical): Wallet -1.00 USD"),  # below 0
        ("20", "[Acme] Resolved: Wallet 19.00 USD"),
    ]
    for i, (change, subject) in enumerate(steps):
        moment = start + timedelta(minutes=10 * i)
        move_wallet(account, f"step-{i}", change, moment - timedelta(minutes=1))
        sent = len(mail.outbox)

        alerts.evaluate_account(account, now=moment)

        if subject is None:
            assert len(mail.outbox) == sent, f"step {i} should tell nobody"
        else:
            assert len(mail.outbox) == sent + 1 and mail.outbox[-1].subject.startswith(subject), (
                i,
                mail.outbox[-1].subject,
            )
    episode = rule.episodes.get()
    assert (episode.notified_severity, episode.resolved_at) == (3, start + timedelta(minutes=50))
    assert list(episode.notifications.order_by("pk").values_list("kind", "severity")) == [
        ("firing", "warning"),
        ("escalated", "high"),
        ("escalated", "critical"),
        ("resolved", "ok"),
    ]


def test_concurrent_evaluators_escalate_once(transactional_db, account: Account, now: datetime):
    from tests.billing.test_alerts_concurrency import race

    start = now - timedelta(hours=1)
    wallet_rule(account)
    move_wallet(account, "low", "8", start - timedelta(minutes=1))
    alerts.evaluate_account(account, now=start)
    move_wallet(account, "lower", "-9", start + timedelta(minutes=1))

    assert (
        race(lambda: alerts.evaluate_account(Account.objects.get(pk=account.pk), now=start + timedelta(minutes=5)))
        == []
    )

    assert [m.subject.split(":")[0] for m in mail.outbox] == [
        "[Acme] Wallet 8.00 USD — no run-out projected within a year",
        "[Acme] Worse (critical)",
    ]
    assert AlertNotification.objects.filter(kind=NotificationKind.ESCALATED).count() == 1


def test_a_new_account_gets_the_standard_rules_and_its_negative_wallet_reaches_its_channel(transactional_db, settings):
    settings.ALERT_DEFAULT_RULES = True
    account = create_account(name="Fresh", slug="fresh", currency="USD")
    assert set(AlertRule.objects.filter(account=account).values_list("name", "kind")) == {
        ("Wallet below zero", AlertKind.WALLET_BELOW),
        ("Token balance low", AlertKind.TOKEN_BALANCE_PERCENT),
        ("Runs out within 7 days", AlertKind.RUNOUT_WITHIN),
        ("Spend surge", AlertKind.SPEND_SPIKE),
    }
    runout = AlertRule.objects.get(account=account, kind=AlertKind.RUNOUT_WITHIN)
    assert alerts.tiers_label(runout) == "7 / 3 / 1"
    members_with_emails(account, ["oncall@example.com"])
    create_channel(account, kind=ChannelKind.EMAIL, target="oncall@example.com")
    move_wallet(account, "overdrawn", "-2.42", timezone.now() - timedelta(minutes=1))

    alerts.evaluate_account(account)

    # Told once, by the wallet rule: the run-out rule leaves a balance already run out to the
    # rule for it (tests/billing/test_a_balance_run_out_is_told_once.py).
    (wallet,) = mail.outbox
    assert wallet.subject.startswith("[Fresh] Wallet -2.42 USD") and wallet.to == ["oncall@example.com"]
