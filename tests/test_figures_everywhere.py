"""One account's data, every figure read from every surface that shows it, all equal.

The account has plans (one for a model nobody uses yet, one expiring soon with tokens
left), a wallet that usage drove below zero, priced usage and a model without a price,
and alert rules that fire. Through the real proxy (uvicorn, the `openai` SDK) it also
made a call with a 10 MB prompt to an upstream that does not answer (a failed call:
no tokens, no cost, no wallet charge, still a request with an error), and two calls the
provider sync read back from the console as well (the fake console, the real sync), one
recorded by the proxy first and one by the sync first: each is counted once.

Each figure is read where people see it: the Plans & wallet page, the Overview and its
htmx balance card, the forecast card, the banner, the monthly statements and their CSV,
/api/v1/balance, /api/v1/usage/summary (and /api/v1/usage/records for the calls
themselves), and the alert emails as a real SMTP server (aiosmtpd) receives them. Surfaces that show a date show
the same day; money shown rounded is the exact amount rounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openai
import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from openai import OpenAI

from billing import alerts
from billing.models import AlertKind, AlertRule, Allocation
from billing.sync import sync_account
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.billing.fake_console import ACCESS_TOKEN, USER_ID, FakeConsole, LogRow
from tests.billing.test_alerts import Sink, smtp_server  # noqa: F401  (a real SMTP server on localhost)
from tests.members import members_with_emails
from tests.proxy.conftest import KEY, Proxy, ServerThread, simulator  # noqa: F401  (the upstream simulator)
from tests.surfaces import csv_rows, email_row, email_text, parse_email, text_by_id
from toki_dashboard.asgi import application
from toki_dashboard.roles import Role
from usage.models import Account, Membership, ModelPrice, PriceSource, Provider, TokenScope, UsageRecord
from usage.proxy.simulator import Simulator
from usage.services import create_api_token

DAYS = 14
RECIPIENTS = "finance@example.com"
TEN_MB = 10 * 1024 * 1024
SIM_MODEL = "sim-gpt"  # priced, covered by no plan: the wallet pays for it at its usage value
SIM_PRICE = (Decimal("2.5"), Decimal("10"))  # per million input and output tokens


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


@dataclass
class Served:
    """What went through the proxy: the call the sync read first and the one the proxy
    recorded first (each the record that counts it), and the failed call."""

    proxy_first: UsageRecord
    sync_first: UsageRecord
    failed: UsageRecord
    value: Decimal  # usage value of the two served calls, each counted once


def _usage_value(usage: openai.types.CompletionUsage) -> Decimal:
    return (usage.prompt_tokens * SIM_PRICE[0] + usage.completion_tokens * SIM_PRICE[1]) / 1_000_000


def _console_row(request_id: str, usage: openai.types.CompletionUsage) -> LogRow:
    return LogRow(
        created_at=int(timezone.now().timestamp()), model_name=SIM_MODEL, token_name="default", quota=100,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, request_id=request_id,
    )  # fmt: skip


def _sync_from(account: Account, console: FakeConsole, *rows: LogRow) -> tuple[int, int]:
    """The real sync, reading these rows from the console; the account then goes back to its
    proxy upstream (one base URL serves both). Returns (records ingested, duplicates)."""
    upstream = account.base_url
    account.provider, account.base_url = Provider.NEWAPI_CONSOLE, console.base_url
    account.set_credentials({"access_token": ACCESS_TOKEN, "user_id": str(USER_ID)})
    account.save()
    console.add_logs(*rows)
    run = sync_account(account)
    assert not run.error, run.error
    account.provider, account.base_url, account.credentials_encrypted = Provider.MANUAL, upstream, ""
    account.save()
    return run.records_ingested, run.duplicates


def through_proxy_and_sync(account: Account, server: ServerThread, sim: Simulator) -> Served:
    ModelPrice.objects.create(
        model_pattern=SIM_MODEL, input_per_mtok=SIM_PRICE[0], output_per_mtok=SIM_PRICE[1], currency="USD",
        effective_from=timezone.now() - timedelta(days=365), source=PriceSource.MANUAL,
    )  # fmt: skip
    upstream = f"{server.url}/v1"
    account.base_url = upstream
    account.save()
    proxy = Proxy(ServerThread(application).start(), account, upstream, sim)
    try:
        via = OpenAI(base_url=proxy.url_for(account.slug), api_key=KEY, max_retries=0)
        # 1. The proxy records a call first; the sync then reads the console's row of it.
        first = via.chat.completions.create(model=SIM_MODEL, messages=[{"role": "user", "content": "first, proxy"}])
        proxy.flush()
        console_id = sim.log[-1].request_id
        # 2. The sync reads a call's row first; the proxy records the call after. The console
        # id is known before the call: the simulator answers with the one it is given.
        second_messages = [{"role": "user", "content": "second, sync"}]
        direct = OpenAI(base_url=upstream, api_key=KEY, max_retries=0)
        expected = direct.chat.completions.create(model=SIM_MODEL, messages=second_messages)  # not recorded
        later_id = f"{console_id}-later"
        rows = [_console_row(console_id, first.usage), _console_row(later_id, expected.usage)]
        with FakeConsole() as console:
            assert _sync_from(account, console, *rows) == (1, 1)  # the first is a duplicate: seen by the sync
        sim.next_request_ids.append(later_id)
        second = via.chat.completions.create(model=SIM_MODEL, messages=second_messages)
        assert second.usage == expected.usage and second.id == expected.id
        # 3. A 10 MB prompt to an upstream nobody answers: a 502 that costs nothing.
        account.base_url = str(httpx.URL(upstream).copy_with(port=1))  # nothing listens on port 1
        account.save()
        with pytest.raises(openai.InternalServerError) as caught:
            via.chat.completions.create(model=SIM_MODEL, messages=[{"role": "user", "content": "x" * TEN_MB}])
        assert caught.value.status_code == 502
        proxy.flush()
    finally:
        proxy.server.stop()  # the lifespan shutdown writes what is still queued
        connections.close_all()
    account.base_url = upstream
    account.save()
    records = UsageRecord.objects.filter(account=account, model=SIM_MODEL)
    served = Served(
        proxy_first=records.get(response_id=first.id),
        sync_first=records.get(upstream_request_id=later_id),
        failed=records.get(status_code=502),
        value=_usage_value(first.usage) + _usage_value(second.usage),
    )
    assert served.value > 0
    return served


@pytest.fixture
def acme(transactional_db, account: Account, simulator, settings) -> dict[str, Any]:  # noqa: F811
    """Two weeks of traffic on three plans and a wallet, one model unpriced, four firing rules;
    today, calls through the proxy and the sync (`Served`)."""
    settings.TOKI_PROXY_ACCOUNT_CACHE_SECONDS = 0  # the test moves the account's upstream between calls
    settings.BILLING_SYNC_TIMEOUT_SECONDS = 2
    served = through_proxy_and_sync(account, *simulator)
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
    ids["served"] = served
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
    records_api: list[dict[str, Any]]
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
        records_api=reader.get(
            "/api/v1/usage/records", {"start": today.isoformat(), "end": today.isoformat(), "model": SIM_MODEL}
        ).json()["records"],
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


def test_the_wallet_balance(surfaces: Surfaces, acme: dict[str, Any]):
    api = Decimal(surfaces.balance_api["wallet_balance"])
    # The top-up less what no plan covered: each served proxy call once, the failed call nothing.
    assert api == Decimal("5.00") - DAYS * Decimal("0.53") - acme["served"].value

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
    # Usage drove the wallet below zero: every surface says it has already run out, none
    # shows today's date (which would read as money left until then).
    assert surfaces.balance_api["wallet_already_run_out"] is True
    assert api_time(surfaces.balance_api["wallet_projected_runout_at"]) is not None  # kept for existing readers

    assert text_by_id(surfaces.plans_page, "plans-wallet-run-out") == "Already run out"
    # On the card it follows "Plan tokens · wallet", mid-sentence.
    assert text_by_id(surfaces.card, "balance-card-wallet-run-out") == "already run out"
    assert text_by_id(surfaces.forecast_card, "forecast-wallet-run-out") == "Already run out"
    assert email_row(surfaces.email("Wallet low"), "Projected run-out") == "already run out (at or below zero)"
    assert email_row(surfaces.email("Runs out"), "Wallet run-out") == "already run out (at or below zero)"
    assert "already run out" in surfaces.email("Wallet low")["Subject"]


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


def test_usage_value_paid_and_unpriced_requests(surfaces: Surfaces, acme: dict[str, Any]):
    total = surfaces.summary_api["total"]
    value, paid = Decimal(total["cost"]), Decimal(total["paid"])
    served = acme["served"].value  # the two calls both the proxy and the sync carried, once each
    assert value == DAYS * (Decimal("0.4000") + Decimal("0.0500") + Decimal("0.5300")) + served
    plan_paid = DAYS * (Decimal(80_000) * Decimal("28.00") / 1_400_000 + Decimal(50_000) * Decimal("15.00") / 3_000_000)
    # Plans at their price per token, the wallet at cost.
    assert paid == plan_paid + DAYS * Decimal("0.53") + served
    assert total["unpriced_requests"] == DAYS and total["paid_unknown_requests"] == DAYS
    # Four records a day, the two calls seen twice once each, and the failed call.
    assert (total["requests"], total["errors"]) == (4 * DAYS + 3, 1)

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

    expected = (
        f"Plan savings {shown_money(savings)} USD"
        if savings >= 0
        else f"Paid {shown_money(-savings)} USD over usage value"
    )
    assert text_by_id(surfaces.overview, "overview-savings") == expected


def test_the_failed_call_costs_nothing_moves_no_balance_and_shows_as_a_failed_request(
    surfaces: Surfaces, acme: dict[str, Any]
):
    failed = acme["served"].failed
    assert failed.context_bytes >= TEN_MB  # its size stays, for diagnosis
    assert (failed.prompt_tokens, failed.completion_tokens, failed.tokens_source, failed.cost) == (0, 0, "none", 0)
    allocated = Allocation.objects.filter(record=failed)
    assert allocated.exists() and all(a.tokens == 0 and not a.amount for a in allocated)
    (shown,) = [r for r in surfaces.records_api if r["request_id"] == failed.request_id]
    assert (shown["status_code"], shown["prompt_tokens"], Decimal(shown["cost"])) == (502, 0, 0)
    assert shown["error_cause"] != ""
    # Its priced model would have cost 2.5 M estimated tokens × 2.5 USD; the wallet and the
    # usage value (test_the_wallet_balance, test_usage_value_paid_and_unpriced_requests) hold
    # the served calls only, and the model's row in the summary counts it as an error.
    (row,) = [r for r in surfaces.summary_api["rows"] if r["key"] == SIM_MODEL]
    assert (row["requests"], row["errors"], Decimal(row["cost"])) == (3, 1, acme["served"].value)


def test_a_call_the_proxy_and_the_sync_both_carry_is_counted_once_whichever_arrived_first(
    surfaces: Surfaces, acme: dict[str, Any]
):
    served = acme["served"]
    for counted, first, then in [(served.proxy_first, "proxy", "sync"), (served.sync_first, "sync", "proxy")]:
        assert counted.source == first
        assert [s.source for s in counted.sightings.all()] == [then]
        same_call = UsageRecord.objects.filter(account=counted.account, upstream_request_id=counted.upstream_request_id)
        assert same_call.count() == 1
    assert served.proxy_first.response_id and served.sync_first.upstream_request_id
    shown = {r["request_id"] for r in surfaces.records_api}
    assert shown == {served.proxy_first.request_id, served.sync_first.request_id, served.failed.request_id}
