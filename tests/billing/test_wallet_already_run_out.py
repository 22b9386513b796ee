"""A wallet (or token balance) already at or below zero reads as already run out on every
surface, never as running out today: finance reads these figures as a record of money."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing import alerts
from billing.forecast import account_forecast
from billing.models import AlertKind, AlertRule
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.members import members_with_emails
from usage.models import Account, TokenScope
from usage.services import create_api_token


def wallet_overdrawn(account: Account, now: datetime) -> None:
    """2.00 topped up, then 1.00 a day charged to it for 14 days (no plan): the wallet is at -12.00."""
    top_up(account, "t1", "2.00", now - timedelta(days=40))
    ingest(
        account,
        *[
            record(
                f"r-{back}",
                datetime.combine((now - timedelta(days=back)).date(), time(6), tzinfo=UTC),
                "doubao-pro",
                2_000,
                2_000,
                "1.00",
            )
            for back in range(1, 15)
        ],
    )
    allocate(account, now)


def test_the_forecast_of_a_wallet_below_zero_says_it_has_already_run_out(account: Account):
    now = timezone.now()
    wallet_overdrawn(account, now)

    result = account_forecast(account, now=now)

    assert result.wallet_balance < 0
    assert result.wallet_run_out.already
    assert result.wallet_run_out.at == now  # the API's field keeps a moment: it ran out by now
    assert not result.token_run_out.already


def test_a_wallet_with_money_left_has_not_already_run_out(account: Account):
    now = timezone.now()
    top_up(account, "t1", "50.00", now - timedelta(days=40))
    allocate(account, now)

    assert not account_forecast(account, now=now).wallet_run_out.already


def test_the_forecast_page_shows_a_wallet_below_zero_as_already_run_out(finance_client: Client, account: Account):
    wallet_overdrawn(account, timezone.now())

    body = finance_client.get(reverse("billing:forecast_chart"), HTTP_HX_REQUEST="true").content.decode()

    assert 'id="forecast-wallet-run-out">Already run out' in body


def test_the_balance_api_flags_a_wallet_below_zero_as_already_run_out(account: Account):
    wallet_overdrawn(account, timezone.now())
    token = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])[1]

    body = Client().get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {token}").json()

    assert Decimal(body["wallet_balance"]) < 0
    assert body["wallet_already_run_out"] is True
    assert body["already_run_out"] is False  # the token balance: no plan, nothing to run out
    assert body["wallet_projected_runout_at"] is not None  # kept for existing readers


def rule(account: Account, kind: str, threshold: int) -> AlertRule:
    return AlertRule.objects.create(
        account=account,
        name=str(kind),
        kind=kind,
        threshold=threshold,
        recipients=members_with_emails(account, ["finance@example.com"]),
    )


def test_alerts_word_a_wallet_below_zero_as_already_run_out(transactional_db, account: Account):
    now = timezone.now()
    wallet_overdrawn(account, now)
    wallet = rule(account, AlertKind.WALLET_BELOW, 10)
    (wallet_check,) = [o.check for o in alerts.evaluate_account(account, now=now)]
    # The run-out rule words it too, where no wallet rule tells of it (it leaves it to one that does).
    wallet.delete()
    rule(account, AlertKind.RUNOUT_WITHIN, 3)
    (soon_check,) = [o.check for o in alerts.evaluate_account(account, now=now)]

    assert wallet_check.firing and str(wallet_check.summary).endswith("— already run out (at or below zero)")
    assert soon_check.firing and str(soon_check.summary) == "Wallet has already run out (at or below zero)"
    for check in (wallet_check, soon_check):
        assert "runs out around" not in str(check.summary)
        rows = {str(label): str(value) for label, value in check.details}
        assert "already run out" in rows.get("Wallet run-out", rows.get("Projected run-out", ""))


def test_a_token_balance_used_up_by_plans_in_effect_has_already_run_out(account: Account):
    now = timezone.now()
    buy(account, "pro", 10_000, now - timedelta(days=40), now + timedelta(days=30), models=["gpt-*"])
    ingest(
        account,
        *[
            record(
                f"g-{back}",
                datetime.combine((now - timedelta(days=back)).date(), time(6), tzinfo=UTC),
                "gpt-4o",
                1_000,
                1_000,
                "0.10",
            )
            for back in range(1, 15)
        ],
    )
    allocate(account, now)

    result = account_forecast(account, now=now)

    assert result.token_balance <= 0
    assert result.token_run_out.already


def test_the_metrics_flag_a_wallet_below_zero_as_already_run_out(account: Account):
    wallet_overdrawn(account, timezone.now())
    token = create_api_token(account=account, name="scraper", scopes=[TokenScope.METRICS])[1]

    body = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()

    found = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    assert found[("toki_already_run_out", frozenset({"account": "acme", "balance": "wallet"}.items()))] == 1
    assert found[("toki_already_run_out", frozenset({"account": "acme", "balance": "tokens"}.items()))] == 0


def test_a_zero_wallet_nothing_is_charged_to_has_not_already_run_out(account: Account):
    now = timezone.now()
    buy(account, "pro", 1_000_000, now - timedelta(days=40), now + timedelta(days=300), models=["gpt-*"])
    allocate(account, now)  # no usage: nothing is projected to the wallet

    result = account_forecast(account, now=now)

    assert result.wallet_balance == 0 and result.wallet_run_out.at is None
    assert not result.wallet_run_out.already and not result.token_run_out.already


def test_a_zero_wallet_first_charged_when_its_plan_expires_runs_out_then(account: Account):
    now = timezone.now()
    buy(account, "pro", 1_000_000, now - timedelta(days=40), now + timedelta(days=300), models=["gpt-*"])
    ingest(
        account,
        *[
            record(
                f"g-{back}",
                datetime.combine((now - timedelta(days=back)).date(), time(6), tzinfo=UTC),
                "gpt-4o",
                100,
                100,
                "0.01",
            )
            for back in range(1, 15)
        ],
    )
    allocate(account, now)

    result = account_forecast(account, now=now)

    assert result.wallet_balance == 0 and not result.wallet_run_out.already
    assert result.wallet_run_out.at is not None and result.wallet_run_out.at >= now + timedelta(days=299)
