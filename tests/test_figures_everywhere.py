"""One account's data, every figure read from every surface that shows it, all equal.

The account has plans (one for a model nobody uses yet, one expiring soon with tokens
left), a wallet that usage drove below zero, priced usage and a model without a price,
and alert rules that fire. Each figure is read where people see it: the Plans & wallet
page, the Overview and its htmx balance card, the forecast card, the banner, the
monthly statements and their CSV, /api/v1/balance, /api/v1/usage/summary, and the alert
emails as a real SMTP server (aiosmtpd) receives them. Surfaces that show a date show
the same day; money shown rounded is the exact amount rounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import alerts
from billing.models import AlertKind, AlertRule
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.billing.test_alerts import Sink, smtp_server  # noqa: F401  (a real SMTP server on localhost)
from tests.members import members_with_emails
from tests.surfaces import csv_rows, email_row, email_text, parse_email, text_by_id
from toki_dashboard.roles import Role
from usage.models import Account, Membership, TokenScope
from usage.services import create_api_token

DAYS = 14
RECIPIENTS = "finance@example.com"


def shown_money(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def local(moment: datetime) -> datetime:
    return moment.astimezone(ZoneInfo(settings.DASHBOARD_TIME_ZONE))


def day_shown(moment: datetime) -> str:
    """A date as the cards show it: "7 Dec"."""
    moment = local(moment)
    return f"{moment.day} {moment:%b}"


def api_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def acme(transactional_db, account: Account) -> dict[str, int]:
    """Two weeks of traffic on three plans and a wallet, one model unpriced, four firing rules."""
    now = timezone.now()
    start = now - timedelta(days=30)
    ids = {
        # Runs out within days: the token run-out is a date every surface must agree on.
        "gpt": buy(account, "gpt-pro", 1_400_000, start, now + timedelta(days=40), models=["gpt-4o*"], price="28.00"),
        # Bought for a model nobody uses yet: its tokens are usable all the same.
        "claude": buy(
            account,
            "claude",
            500_000,
            now - timedelta(days=5),
            now + timedelta(days=60),
            models=["claude-*"],
            price="10.00",
        ),
        # Expires in three days with most of it left: projected unused tokens, and their price.
        "deepseek": buy(
            account, "DeepSeek Pack", 3_000_000, start, now + timedelta(days=3), models=["deepseek-*"], price="15.00"
        ),
    }
    top_up(account, "opening", "5.00", start)
    traffic = []
    for back in range(1, DAYS + 1):
        day = now - timedelta(days=back)
        traffic += [
            record(f"gpt-{back}", day, "gpt-4o", 60_000, 20_000, "0.4000", api_key="prod"),
            record(f"ds-{back}", day - timedelta(hours=1), "deepseek-chat", 40_000, 10_000, "0.0500", api_key="batch"),
            # No plan covers qwen: the wallet pays 0.53 a day and goes below zero.
            record(f"qwen-{back}", day - timedelta(hours=2), "qwen-max", 20_000, 5_000, "0.5300", api_key="prod"),
            # No price: no usage value, and what the wallet paid for it is unknown.
            record(f"mystery-{back}", day - timedelta(hours=3), "mystery-model", 1_000, 500, None, api_key="batch"),
        ]
    ingest(account, *traffic)
    allocate(account, now)
    for name, kind, threshold, days in [
        ("DeepSeek wasted", AlertKind.PLAN_EXPIRING_UNUSED, 10, 7),
        ("Tokens low", AlertKind.TOKEN_BALANCE_TOKENS, 100_000_000, None),
        ("Wallet low", AlertKind.WALLET_BELOW, 10, None),
        ("Runs out", AlertKind.RUNOUT_WITHIN, 400, None),
    ]:
        AlertRule.objects.create(
            account=account,
            name=name,
            kind=kind,
            threshold=threshold,
            days=days,
            recipients=members_with_emails(account, [RECIPIENTS]),
        )
    return ids


@dataclass
class Surfaces:
    plans_page: str
    card: str
    forecast_card: str
    overview: str
    statements: list[str]
    csv_totals: list[dict[str, str]]
    balance_api: dict[str, Any]
    summary_api: dict[str, Any]
    emails: dict[str, EmailMessage] = field(default_factory=dict)

    def email(self, rule: str) -> EmailMessage:
        return self.emails[rule]


def _client(make_user, role: Role, account: Account) -> Client:
    user = make_user(f"user-{role.value}", role)
    Membership.objects.create(account=account, user=user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def surfaces(acme, account: Account, smtp_server: Sink, make_user) -> Surfaces:  # noqa: F811
    """Every surface, read one after the other as people would open them."""
    outcomes = alerts.evaluate_account(account)  # the scheduled evaluation: no moment given
    assert all(outcome.check.firing for outcome in outcomes), [o.check.summary for o in outcomes]
    finance = _client(make_user, Role.FINANCE, account)
    reader = Client(
        HTTP_AUTHORIZATION=f"Bearer {create_api_token(account=account, name='r', scopes=[TokenScope.READ])[1]}"
    )
    today = timezone.localdate(timezone=ZoneInfo(settings.DASHBOARD_TIME_ZONE))
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    period = {"period": "custom", "start": last_month.isoformat(), "end": today.isoformat()}
    months = [f"{last_month:%Y-%m}", f"{this_month:%Y-%m}"]
    found = Surfaces(
        plans_page=finance.get(reverse("billing:plans")).content.decode(),
        card=finance.get(reverse("billing:balance_card"), HTTP_HX_REQUEST="true").content.decode(),
        forecast_card=finance.get(reverse("billing:forecast_chart"), HTTP_HX_REQUEST="true").content.decode(),
        overview=finance.get(reverse("usage:overview"), period).content.decode(),
        statements=[finance.get(reverse("billing:reports"), {"month": m}).content.decode() for m in months],
        csv_totals=[
            next(
                r
                for r in csv_rows(finance.get(reverse("billing:report_csv", args=[m])).content)
                if r["section"] == "total"
            )
            for m in months
        ],
        balance_api=reader.get("/api/v1/balance").json(),
        summary_api=reader.get(
            "/api/v1/usage/summary", {"start": period["start"], "end": period["end"], "group_by": "model"}
        ).json(),
    )
    for envelope in smtp_server.envelopes:
        message = parse_email(envelope.content)
        rule = next(r.name for r in AlertRule.objects.filter(account=account) if f'"{r.name}"' in email_text(message))
        found.emails[rule] = message
    assert set(found.emails) == {"DeepSeek wasted", "Tokens low", "Wallet low", "Runs out"}
    return found


def test_the_usable_token_balance(surfaces: Surfaces):
    api = surfaces.balance_api["token_balance"]
    # Every plan in effect counts, the Claude plan nobody uses included.
    in_effect = [p for p in surfaces.balance_api["plans"] if api_time(p["effective_at"]) <= timezone.now()]
    assert api == sum(p["tokens_remaining"] for p in in_effect)
    assert any(p["name"] == "claude" and p["tokens_remaining"] == 500_000 for p in in_effect)

    shown = f"{api:,}"
    assert text_by_id(surfaces.plans_page, "token-balance") == f"{shown}tokens"
    assert text_by_id(surfaces.card, "balance-card-tokens") == f"{shown}tokens"
    assert email_row(surfaces.email("Tokens low"), "Tokens left").startswith(f"{shown} of ")
    assert f"Token balance {shown} tokens" in surfaces.email("Tokens low")["Subject"]
    assert f"Token balance {shown} tokens" in text_by_id(surfaces.plans_page, "alert-banner")


def test_the_wallet_balance(surfaces: Surfaces):
    api = Decimal(surfaces.balance_api["wallet_balance"])
    assert api == Decimal("5.00") - DAYS * Decimal("0.53")  # the top-up less what no plan covered

    assert text_by_id(surfaces.plans_page, "wallet-balance") == f"{shown_money(api)}USD"
    assert text_by_id(surfaces.card, "balance-card-wallet") == f"{shown_money(api)}USD"
    assert email_row(surfaces.email("Wallet low"), "Wallet balance") == f"{shown_money(api)} USD"
    assert f"Wallet {shown_money(api)} USD" in surfaces.email("Wallet low")["Subject"]
    # Below zero: a warning wherever it is shown.
    assert 'class="metric metric--danger" id="wallet-balance-card"' in surfaces.plans_page
    assert 'class="metric metric--danger" id="balance-card-wallet-card"' in surfaces.card


def test_the_token_run_out(surfaces: Surfaces):
    at = api_time(surfaces.balance_api["projected_runout_at"])
    assert at is not None and at > timezone.now()

    assert text_by_id(surfaces.plans_page, "plans-token-run-out") == day_shown(at)
    assert text_by_id(surfaces.card, "balance-card-run-out") == day_shown(at)
    assert (
        text_by_id(surfaces.forecast_card, "forecast-token-run-out")
        == f"{local(at):%a} {day_shown(at)}, {local(at):%H:%M}"
    )
    assert email_row(surfaces.email("Tokens low"), "Projected run-out") == alerts.moment_label(at)
    assert email_row(surfaces.email("Runs out"), "Projected run-out") == alerts.moment_label(at)


def test_the_wallet_run_out(surfaces: Surfaces):
    at = api_time(surfaces.balance_api["wallet_projected_runout_at"])
    assert at is not None

    assert text_by_id(surfaces.plans_page, "plans-wallet-run-out") == day_shown(at)
    assert text_by_id(surfaces.card, "balance-card-wallet-run-out") == day_shown(at)
    assert (
        text_by_id(surfaces.forecast_card, "forecast-wallet-run-out")
        == f"{local(at):%a} {day_shown(at)}, {local(at):%H:%M}"
    )
    assert email_row(surfaces.email("Wallet low"), "Projected run-out") == alerts.moment_label(at)
    assert email_row(surfaces.email("Runs out"), "Wallet run-out") == alerts.moment_label(at)


def test_projected_unused_tokens_per_plan(surfaces: Surfaces, acme: dict[str, int]):
    plans = {p["id"]: p for p in surfaces.balance_api["plans"]}
    pack = plans[acme["deepseek"]]["projected_unused_at_expiry"]
    assert pack > 0  # expiring in three days with most of it left

    for purchase_id, plan in plans.items():
        unused = plan["projected_unused_at_expiry"]
        assert text_by_id(surfaces.plans_page, f"projected-unused-{purchase_id}") == f"{unused:,}"
    message = surfaces.email("DeepSeek wasted")
    assert f"({pack:,} tokens)" in message["Subject"]
    assert f"{pack:,} (" in email_row(message, "Plan DeepSeek Pack")
    assert f"({pack:,} tokens)" in text_by_id(surfaces.plans_page, "alert-banner")
    # What those tokens were paid: 15.00 for 3,000,000 tokens.
    value = Decimal(pack) * Decimal("15.00") / 3_000_000
    assert text_by_id(surfaces.plans_page, f"projected-unused-value-{acme['deepseek']}") == f"{shown_money(value)} USD"
    assert f"paid {shown_money(value)} USD" in email_row(message, "Plan DeepSeek Pack")


def test_usage_value_paid_and_unpriced_requests(surfaces: Surfaces):
    total = surfaces.summary_api["total"]
    value, paid = Decimal(total["cost"]), Decimal(total["paid"])
    assert value == DAYS * (Decimal("0.4000") + Decimal("0.0500") + Decimal("0.5300"))
    plan_paid = DAYS * (Decimal(80_000) * Decimal("28.00") / 1_400_000 + Decimal(50_000) * Decimal("15.00") / 3_000_000)
    assert paid == plan_paid + DAYS * Decimal("0.53")  # plans at their price per token, the wallet at cost
    assert total["unpriced_requests"] == DAYS and total["paid_unknown_requests"] == DAYS

    assert text_by_id(surfaces.overview, "overview-usage-value") == shown_money(value)
    assert text_by_id(surfaces.overview, "overview-paid") == shown_money(paid)
    assert f"excludes {DAYS} unpriced requests" in surfaces.overview
    assert sum(Decimal(r["usage_value_exact"]) for r in surfaces.csv_totals) == value
    assert sum(Decimal(r["paid_exact"]) for r in surfaces.csv_totals) == paid
    assert sum(int(r["unpriced_requests"]) for r in surfaces.csv_totals) == DAYS
    for statement, row in zip(surfaces.statements, surfaces.csv_totals, strict=True):
        assert text_by_id(statement, "statement-usage-value") == row["usage_value"]
        assert text_by_id(statement, "statement-paid") == row["paid"]


def test_the_savings_are_usage_value_less_paid(surfaces: Surfaces):
    total = surfaces.summary_api["total"]
    savings = Decimal(total["cost"]) - Decimal(total["paid"])  # nothing paid for an unpriced request here

    assert text_by_id(surfaces.overview, "overview-savings") == f"Plan savings {shown_money(savings)} USD"
