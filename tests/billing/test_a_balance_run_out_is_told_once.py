"""A balance that has run out is told once, by the rule for that balance (wallet below zero,
token balance low); the run-out rule warns *before* a balance runs out and hands a balance
already run out over to that rule. It still tells of a balance already run out when no
enabled rule of the account does, and still warns of the other balance running out.

The defect this starts from: with the standard rules, a wallet going below zero sent two
notifications for one state, "Wallet -2.42 USD — already run out" from *Wallet below zero*
and "Wallet has already run out" from *Runs out within 7 days*.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing import alerts
from billing.alert_defaults import create_default_rules
from billing.models import AlertEpisode, AlertKind, AlertNotification, AlertRule, ChannelKind
from billing.notify.channels import create_channel
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.billing.test_alert_escalation import move_wallet, wallet_burning_one_dollar_a_day
from tests.members import members_with_emails
from usage.models import Account

ONCALL = "oncall@example.com"
WALLET_RULE, TOKEN_RULE, RUN_OUT_RULE = "Wallet below zero", "Token balance low", "Runs out within 7 days"


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def standard(transactional_db, account: Account) -> Account:
    """The account with the standard rules, told to its on-call email channel."""
    create_default_rules(account)
    members_with_emails(account, [ONCALL])
    create_channel(account, kind=ChannelKind.EMAIL, target=ONCALL)
    return account


def told(account: Account) -> list[tuple[str, str]]:
    """(rule, kind) of every notification sent so far, oldest first."""
    notifications = AlertNotification.objects.filter(account=account).order_by("pk")
    return list(notifications.values_list("rule__name", "kind"))


def gpt_usage(account: Account, now: datetime, tokens_a_day: int, days: int) -> None:
    """`days` days of gpt-4o usage, `tokens_a_day` tokens each (half prompt, half completion)."""
    half = tokens_a_day // 2
    day = [datetime.combine((now - timedelta(days=back)).date(), time(6), tzinfo=UTC) for back in range(1, days + 1)]
    ingest(account, *[record(f"g-{i}", moment, "gpt-4o", half, half, "0.10") for i, moment in enumerate(day)])


def test_a_wallet_going_below_zero_is_told_once_by_the_wallet_rule(standard: Account, now: datetime):
    move_wallet(standard, "overdrawn", "-2.42", now - timedelta(minutes=1))

    alerts.evaluate_account(standard, now=now)

    assert told(standard) == [(WALLET_RULE, "firing")]
    (message,) = mail.outbox
    assert message.subject.startswith("[Acme] Wallet -2.42 USD — already run out") and message.to == [ONCALL]


def test_a_wallet_that_was_running_out_and_goes_below_zero_is_told_once_more(standard: Account, now: datetime):
    wallet_burning_one_dollar_a_day(standard, now, left="2.50")
    alerts.evaluate_account(standard, now=now)
    assert told(standard) == [(RUN_OUT_RULE, "firing")]
    assert mail.outbox[0].subject.startswith("[Acme] Wallet runs out around ")

    # An hour later a correction of the provider's takes the wallet to -2.50 USD.
    later = now + timedelta(hours=1)
    move_wallet(standard, "correction", "-5.00", later - timedelta(minutes=1))
    alerts.evaluate_account(standard, now=later)

    assert told(standard)[1:] == [(WALLET_RULE, "firing")], "one state, one notification"
    assert len(mail.outbox) == 2 and mail.outbox[1].subject.startswith("[Acme] Wallet -2.50 USD — already run out")
    # The run-out rule's warning came true: its episode is closed, having told only the warning.
    warning = AlertEpisode.objects.get(rule__name=RUN_OUT_RULE)
    assert warning.resolved_at == later
    assert list(warning.notifications.values_list("kind", flat=True)) == ["firing"]

    # Topped up for months: the wallet rule says so, once; nothing is left to warn of.
    top_up(standard, "refill", "200.00", later + timedelta(minutes=1))
    alerts.evaluate_account(standard, now=later + timedelta(minutes=10))

    assert told(standard)[2:] == [(WALLET_RULE, "resolved")]
    assert not AlertEpisode.objects.filter(account=standard, resolved_at__isnull=True).exists()


def test_a_token_balance_used_up_is_told_once_by_the_token_balance_rule(standard: Account, now: datetime):
    buy(standard, "pro", 10_000, now - timedelta(days=40), now + timedelta(days=30), models=["gpt-*"])
    top_up(standard, "wallet", "100.00", now - timedelta(days=40))  # pays what the plan no longer covers for years
    gpt_usage(standard, now, 2_000, days=14)
    allocate(standard, now)

    alerts.evaluate_account(standard, now=now)

    assert told(standard) == [(TOKEN_RULE, "firing")]
    (message,) = mail.outbox
    assert "already run out" in message.subject


def tokens_running_out_with_the_wallet_below_zero(account: Account, now: datetime) -> None:
    buy(account, "pro", 100_000, now - timedelta(days=20), now + timedelta(days=60), models=["gpt-*"])
    gpt_usage(account, now, 7_000, days=10)  # 30,000 tokens left: about four days
    allocate(account, now)
    move_wallet(account, "overdrawn", "-2.42", now - timedelta(minutes=1))


def test_the_run_out_rule_still_warns_of_the_token_balance_while_the_wallet_is_below_zero(
    standard: Account, now: datetime
):
    tokens_running_out_with_the_wallet_below_zero(standard, now)

    checks = {o.rule.name: o.check for o in alerts.evaluate_account(standard, now=now)}

    assert told(standard) == [(WALLET_RULE, "firing"), (RUN_OUT_RULE, "firing")]
    assert str(checks[RUN_OUT_RULE].summary).startswith("Token balance runs out around ")
    assert mail.outbox[1].subject.startswith("[Acme] Token balance runs out around ")


def test_a_token_warning_that_resolves_while_the_wallet_is_below_zero_says_so(standard: Account, now: datetime):
    tokens_running_out_with_the_wallet_below_zero(standard, now)
    alerts.evaluate_account(standard, now=now)

    # A big plan: the tokens last for months; the wallet is still below zero.
    later = now + timedelta(minutes=10)
    buy(standard, "big", 1_000_000, later - timedelta(minutes=1), later + timedelta(days=365), models=["gpt-*"])
    allocate(standard, later)
    alerts.evaluate_account(standard, now=later)

    # The run-out rule spoke of the tokens, not of the wallet: its warning is over, and it says so.
    assert told(standard)[2:] == [(RUN_OUT_RULE, "resolved")]
    assert mail.outbox[-1].subject.startswith("[Acme] Resolved: Token balance runs out around ")


@pytest.mark.parametrize("change", ["removed", "disabled"])
def test_without_an_enabled_wallet_rule_the_run_out_rule_tells_of_a_wallet_below_zero(
    standard: Account, now: datetime, change: str
):
    wallet_rules = AlertRule.objects.filter(account=standard, kind=AlertKind.WALLET_BELOW)
    if change == "removed":
        wallet_rules.delete()
    else:
        wallet_rules.update(enabled=False)
    move_wallet(standard, "overdrawn", "-2.42", now - timedelta(minutes=1))

    alerts.evaluate_account(standard, now=now)

    assert told(standard) == [(RUN_OUT_RULE, "firing")]
    (message,) = mail.outbox
    assert message.subject == "[Acme] Wallet has already run out (at or below zero)"


def test_a_wallet_rule_enabled_again_takes_over_from_the_run_out_rule_without_a_second_word(
    standard: Account, now: datetime
):
    AlertRule.objects.filter(account=standard, name=WALLET_RULE).update(enabled=False)
    move_wallet(standard, "overdrawn", "-2.42", now - timedelta(minutes=1))
    alerts.evaluate_account(standard, now=now)
    assert told(standard) == [(RUN_OUT_RULE, "firing")]

    AlertRule.objects.filter(account=standard, name=WALLET_RULE).update(enabled=True)
    later = now + timedelta(minutes=10)
    checks = {o.rule.name: o.check for o in alerts.evaluate_account(standard, now=later)}

    assert told(standard)[1:] == [(WALLET_RULE, "firing")]
    run_out = checks[RUN_OUT_RULE]
    assert not run_out.firing
    assert str(run_out.summary) == "Wallet has already run out: the rule “Wallet below zero” tells of it"
    assert AlertEpisode.objects.get(rule__name=RUN_OUT_RULE).resolved_at == later
