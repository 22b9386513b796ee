"""Currencies: an account is valued in its own currency; a price in another currency is
converted at the exchange rate in effect when the request was made; no rate is unpriced."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from billing import alerts
from billing.models import AlertKind, AlertRule
from billing.recompute import refresh_allocations
from tests.billing.conftest import buy, top_up
from tests.billing.test_alerts import Sink, smtp_server  # noqa: F401  (a real SMTP server on localhost)
from tests.members import members_with_emails
from tests.surfaces import csv_rows, email_row, parse_email, text_by_id
from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from toki_dashboard.celery import app
from toki_dashboard.roles import Role
from usage import rollups
from usage.exchange import rates_applied
from usage.models import (
    ExchangeRate,
    HourlyUsage,
    Membership,
    ModelPrice,
    PriceSource,
    RateSource,
    RepricingRun,
    TokenScope,
    UsageRecord,
)
from usage.pricing.price_book import COST_QUANTUM
from usage.pricing.services import set_exchange_rate
from usage.schemas import validate_records
from usage.services import create_account, create_api_token, record_usage

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
NOV_15 = datetime(2026, 11, 15, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
# gpt-4o as genai-prices lists it, in USD per million tokens.
INPUT, OUTPUT = Decimal("2.5"), Decimal("10")


@pytest.fixture
def account(db):
    """The test's account (so the role clients are its members): kept in CNY."""
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=INPUT, output_per_mtok=OUTPUT, currency="USD",
        effective_from=datetime(2000, 1, 1, tzinfo=UTC), source=PriceSource.GENAI_PRICES,
    )  # fmt: skip
    return create_account(name="Shanghai", slug="sh", currency="CNY")


@pytest.fixture
def cny(account):
    return account


def rate(value: str, start: datetime, **extra: Any) -> ExchangeRate:
    fields = {"from_currency": "USD", "to_currency": "CNY", "source": RateSource.COMMAND} | extra
    return set_exchange_rate(rate=Decimal(value), effective_from=start, **fields)


def call(request_id: str, at: datetime, prompt: int = 10_000, completion: int = 1_000, **extra: Any) -> dict:
    body = {"request_id": request_id, "occurred_at": at.isoformat(), "model": "gpt-4o"}
    return body | {"usage": {"prompt_tokens": prompt, "completion_tokens": completion}} | extra


def ingest(account, *records: dict) -> None:
    valid, rejected = validate_records(list(records))
    assert not rejected, rejected
    record_usage(account, valid, source="api")


def usd(prompt: int, completion: int) -> Decimal:
    return (prompt * INPUT + completion * OUTPUT) / 1_000_000


def test_without_an_exchange_rate_a_cny_account_finds_usd_priced_models_unpriced_never_free(cny):
    ingest(cny, call("r1", NOV_1 + timedelta(days=3)))

    record = UsageRecord.objects.get(request_id="r1")
    assert record.cost is None and record.exchange_rate is None
    assert next(iter(rollups.stored(cny).values()))["unpriced_requests"] == 1


def test_with_a_rate_the_usd_price_book_values_a_cny_account(cny):
    entered = rate("7.1234", NOV_1)

    ingest(cny, call("r1", NOV_1 + timedelta(days=3), prompt=12_345, completion=678))

    record = UsageRecord.objects.get(request_id="r1")
    assert record.cost == (usd(12_345, 678) * Decimal("7.1234")).quantize(COST_QUANTUM)
    assert (record.exchange_rate, record.price.currency) == (entered, "USD")


@pytest.fixture
def tasks_in_process() -> Iterator[None]:
    """Tasks enqueued on commit run in-process (Celery's eager mode), so that none is left in
    the queue for the real worker of a later test."""
    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved


def test_each_record_is_converted_at_the_rate_in_effect_at_its_time_and_every_figure_agrees(
    transactional_db,
    tasks_in_process: None,
    smtp_server: Sink,  # noqa: F811
    make_user,
):
    """A CNY account valued from the USD price book, the rate changing on the 15th of last
    month. Last month's usage value, the wallet and the last day's usage value are read from
    every surface that shows them, with the same "Converted from …" words beside each; a plan
    paid in USD stays in USD, shown apart."""
    account = create_account(name="Shanghai", slug="sh-all", currency="CNY")
    for model in ("gpt-4o", "claude-3-5-sonnet"):
        ModelPrice.objects.create(
            model_pattern=model, input_per_mtok=INPUT, output_per_mtok=OUTPUT, currency="USD",
            effective_from=datetime(2000, 1, 1, tzinfo=UTC), source=PriceSource.GENAI_PRICES,
        )  # fmt: skip
    zone = ZoneInfo(settings.DASHBOARD_TIME_ZONE)
    now = timezone.now()
    this_month = now.astimezone(zone).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    mid_month = last_month.replace(day=15)
    first, second = rate("7.12", last_month), rate("7.20", mid_month)
    top_up(account, "opening", "5000", last_month - timedelta(days=1))
    # Paid in USD on a CNY account: its price is not converted, it is shown apart.
    buy(account, "usd-plan", 2_000_000, last_month, now + timedelta(days=60), models=["claude-*"],
        price="30.00", currency="USD")  # fmt: skip
    calls, day = [], last_month + timedelta(hours=5)
    while day < now - timedelta(days=1):
        calls.append(call(f"r{len(calls)}", day, prompt=1000 * (len(calls) % 30 + 1)))
        day += timedelta(days=1)
    calls.append(call("claude", last_month + timedelta(days=3), model="claude-3-5-sonnet"))
    calls.append(call("spike", now - timedelta(hours=1), prompt=2_000_000))  # today's usage value jumps
    ingest(account, call("before", last_month - timedelta(hours=1)), *calls)
    refresh_allocations(account, now=now)

    for body in calls:
        record = UsageRecord.objects.get(account=account, request_id=body["request_id"])
        expected_rate = first if record.occurred_at < mid_month else second
        assert record.exchange_rate == expected_rate
        assert record.cost == (usd(body["usage"]["prompt_tokens"], 1000) * expected_rate.rate).quantize(COST_QUANTUM)
    assert UsageRecord.objects.get(account=account, request_id="before").cost is None  # no rate yet: unpriced
    assert rollups.verify(account) == []

    month = UsageRecord.objects.filter(account=account, occurred_at__gte=last_month, occurred_at__lt=this_month)
    month_value = sum(month.values_list("cost", flat=True))
    note = f"Converted from USD at 7.12 (from 1 {last_month:%b %Y}), 7.2 (from 15 {last_month:%b %Y})"
    claude = UsageRecord.objects.get(account=account, request_id="claude")
    plan_paid = Decimal(claude.prompt_tokens + claude.completion_tokens) * Decimal("30.00") / 2_000_000
    wallet = Decimal(5000) - sum(
        UsageRecord.objects.filter(account=account, cost__isnull=False)
        .exclude(pk=claude.pk)
        .values_list("cost", flat=True)
    )
    last_day = HourlyUsage.objects.filter(account=account, hour__gte=now - timedelta(hours=24)).aggregate(c=Sum("cost"))
    last_day = last_day["c"]
    assert last_day == UsageRecord.objects.get(account=account, request_id="spike").cost

    finance = make_user("fiona-cny", Role.FINANCE)
    engineer = make_user("enzo-cny", Role.ENGINEER)
    for user in (finance, engineer):
        Membership.objects.create(account=account, user=user)
    as_finance, as_engineer = Client(), Client()
    as_finance.force_login(finance)
    as_engineer.force_login(engineer)
    token = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    last_day_of_month = this_month - timedelta(days=1)
    period = {"period": "custom", "start": f"{last_month:%Y-%m-%d}", "end": f"{last_day_of_month:%Y-%m-%d}"}

    # Last month's usage value: pages, the Overview's htmx region, the API, the statement and its CSV.
    shown = f"{month_value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    overview = as_finance.get("/", period).content.decode()
    region = as_finance.get("/", period, HTTP_HX_REQUEST="true").content.decode()
    models = as_engineer.get("/models/", period).content.decode()
    statement = as_finance.get("/reports/", {"month": f"{last_month:%Y-%m}"}).content.decode()
    for page, value_id in [(overview, "overview-usage-value"), (region, "overview-usage-value"),
                           (models, "models-usage-value"), (statement, "statement-usage-value")]:  # fmt: skip
        assert (text_by_id(page, value_id), text_by_id(page, "rates-applied")) == (shown, note)
    assert "<html" not in region
    summary = api.get("/api/v1/usage/summary", {"start": period["start"], "end": period["end"], "group_by": "day"})
    summary = summary.json()
    assert (summary["currency"], Decimal(summary["total"]["cost"]), summary["conversion_note"]) == (
        "CNY", month_value, note
    )  # fmt: skip
    assert sum(Decimal(row["cost"]) for row in summary["rows"]) == month_value
    assert [(r["rate"], r["effective_from"][:10]) for r in summary["rates_applied"]] == [
        ("7.12", first.effective_from.date().isoformat()), ("7.2", second.effective_from.date().isoformat())
    ]  # fmt: skip
    csv_total = next(
        r for r in csv_rows(as_finance.get(f"/reports/{last_month:%Y-%m}.csv").content) if r["section"] == "total"
    )
    assert (csv_total["usage_value"], Decimal(csv_total["usage_value_exact"]), csv_total["converted_at"]) == (
        f"{month_value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}", month_value, note
    )  # fmt: skip

    # The plan paid in USD: in USD, apart from the CNY figures, on every surface that shows paid.
    assert summary["total"]["paid_not_converted"] == {"USD": str(plan_paid)}
    assert csv_total["paid_not_converted"] == f"{plan_paid} USD"
    apart = f"+ {plan_paid.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)} USD not converted"
    assert apart in text_by_id(overview, "overview-paid-card")
    balance = api.get("/api/v1/balance").json()
    (plan,) = balance["plans"]
    assert (plan["currency"], Decimal(plan["price"])) == ("USD", Decimal("30.00"))
    plans_page = as_finance.get("/plans/").content.decode()
    assert "30.00 USD" in text_by_id(plans_page, f"purchase-{plan['id']}")

    # The wallet (CNY, charged the converted usage value of what no plan covered) and the emails.
    wallet_shown = f"{wallet.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    assert Decimal(balance["wallet_balance"]) == wallet
    card = as_finance.get("/plans/balance-card/", HTTP_HX_REQUEST="true").content.decode()
    assert text_by_id(plans_page, "wallet-balance") == text_by_id(card, "balance-card-wallet") == f"{wallet_shown}CNY"
    for name, kind, threshold in [("Wallet", AlertKind.WALLET_BELOW, 100_000), ("Spike", AlertKind.SPEND_SPIKE, 2)]:
        AlertRule.objects.create(account=account, name=name, kind=kind, threshold=threshold,
                                 recipients=members_with_emails(account, ["finance@example.com"]))  # fmt: skip
    alerts.evaluate_account(account)
    emails = {message["Subject"]: message for message in map(parse_email, (e.content for e in smtp_server.envelopes))}
    wallet_email = next(m for s, m in emails.items() if "Wallet" in s)
    spike_email = next(m for s, m in emails.items() if "Usage value" in s)
    assert email_row(wallet_email, "Wallet balance") == f"{wallet_shown} CNY"
    assert email_row(spike_email, "Usage value in the last 24 hours").startswith(
        f"{last_day.quantize(Decimal('0.01'))} CNY"
    )
    # Its window (the last 24 hours, the 14 days before) starts after the 15th: the second rate only.
    assert email_row(spike_email, "Exchange rates") == f"Converted from USD at 7.2 (from 15 {last_month:%b %Y})"
    assert rates_applied(account, last_month, mid_month) == [rates_applied(account, last_month, this_month)[0]]


def test_a_price_in_the_accounts_own_currency_wins_over_a_converted_one(cny):
    rate("7.12", NOV_1)
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=Decimal("20"), output_per_mtok=Decimal("80"), currency="CNY",
        effective_from=NOV_1, source=PriceSource.GENAI_PRICES,
    )  # fmt: skip

    ingest(cny, call("r1", NOV_1 + timedelta(days=1)))

    record = UsageRecord.objects.get(request_id="r1")
    assert (record.cost, record.exchange_rate) == (Decimal("0.28"), None)


def test_entering_a_rate_revalues_the_records_it_applies_to_in_the_background(cny, repricing_runs_after_commit):
    ingest(cny, call("early", NOV_1 + timedelta(days=1)), call("late", NOV_15 + timedelta(days=1)))
    with repricing_runs_after_commit():
        rate("7.12", NOV_1)
    with repricing_runs_after_commit():
        rate("7.20", NOV_15)

    costs = dict(UsageRecord.objects.values_list("request_id", "cost"))
    assert costs == {
        "early": (usd(10_000, 1000) * Decimal("7.12")).quantize(COST_QUANTUM),
        "late": (usd(10_000, 1000) * Decimal("7.20")).quantize(COST_QUANTUM),
    }
    assert rollups.verify(cny) == []
    assert RepricingRun.objects.filter(account=cny, finished_at__isnull=False).count() == 2


def test_a_new_entry_for_the_same_moment_replaces_the_earlier_one_and_a_deleted_rate_leaves_records_unpriced(
    cny, repricing_runs_after_commit
):
    with repricing_runs_after_commit():
        rate("7.12", NOV_1)
    ingest(cny, call("r1", NOV_1 + timedelta(days=2)))
    with repricing_runs_after_commit():
        corrected = rate("7.02", NOV_1, note="typo in the first entry")

    record = UsageRecord.objects.get(request_id="r1")
    assert (record.exchange_rate, record.cost) == (
        corrected,
        (usd(10_000, 1000) * Decimal("7.02")).quantize(COST_QUANTUM),
    )
    assert ExchangeRate.objects.count() == 2  # the first entry stays, as history

    with repricing_runs_after_commit():
        ExchangeRate.objects.all().delete()
    assert UsageRecord.objects.get(request_id="r1").cost is None
    assert rollups.verify(cny) == []


def test_a_usd_account_is_untouched_by_rates_into_other_currencies(db):
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=INPUT, output_per_mtok=OUTPUT, currency="USD",
        effective_from=datetime(2000, 1, 1, tzinfo=UTC), source=PriceSource.GENAI_PRICES,
    )  # fmt: skip
    account = create_account(name="Acme", slug="acme")
    rate("7.12", NOV_1)

    ingest(account, call("r1", NOV_1 + timedelta(days=1)))

    assert UsageRecord.objects.get(request_id="r1").cost == usd(10_000, 1000)
    assert rates_applied(account, NOV_1, DEC_1) == []


# --- manage.py set_exchange_rate ------------------------------------------------------------


def test_the_command_enters_a_rate_as_the_contract_says(db):
    out = io.StringIO()

    call_command(
        "set_exchange_rate", "--from", "USD", "--to", "CNY", "--rate", "7.1234",
        "--effective-from", "2026-12-01T00:00:00Z", stdout=out,
    )  # fmt: skip

    entry = ExchangeRate.objects.get()
    assert (entry.pair, entry.rate, entry.effective_from, entry.source) == (
        ("USD", "CNY"), Decimal("7.1234"), DEC_1, RateSource.COMMAND
    )  # fmt: skip
    assert out.getvalue().startswith("1 USD = 7.1234 CNY from 2026-12-01 00:00 UTC.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "seven"], "--rate: 'seven' is not a decimal number"),
        (["--rate", "-1"], "--rate: A rate is a positive number."),
        (["--effective-from", "2026-12-01T00:00:00"], "--effective-from: give the offset too"),
        (["--effective-from", "1 Dec"], "--effective-from: "),
        (["--to", "USD"], "--to: A rate converts between two different currencies."),
        (["--from", "dollars"], "--from: "),
    ],
)
def test_the_command_names_the_option_at_fault(db, args, message):
    options = {"--from": "USD", "--to": "CNY", "--rate": "7.1", "--effective-from": "2026-12-01T00:00:00Z"}
    options |= dict(zip(args[::2], args[1::2], strict=True))

    with pytest.raises(CommandError) as caught:
        call_command("set_exchange_rate", *[part for pair in options.items() for part in pair], stdout=io.StringIO())

    assert str(caught.value).startswith(message)
    assert not ExchangeRate.objects.exists()


# --- The dashboard page -----------------------------------------------------------------------


def test_finance_enters_a_rate_and_the_page_shows_who_entered_what(finance_client, cny):
    response = finance_client.post(
        "/rates/",
        {"from_currency": "usd", "to_currency": "CNY", "rate": "7.12", "effective_from": "2026-11-01T00:00",
         "note": "bank statement"},
    )  # fmt: skip

    assert response.status_code == 302
    entry = ExchangeRate.objects.get()
    assert (entry.pair, entry.rate, entry.source, entry.entered_by.username) == (
        ("USD", "CNY"), Decimal("7.12"), RateSource.DASHBOARD, "fiona"
    )  # fmt: skip
    page = finance_client.get("/rates/").content.decode()
    row = re.search(rf'<tr data-rate="{entry.pk}">(.*?)</tr>', page, re.S).group(1)
    text = " ".join(re.sub(r"<[^>]+>", " ", row).split())
    assert text.startswith("1 USD → CNY 7.12 1 Nov 2026, 00:00 In effect")
    assert "fiona" in text and "Dashboard · bank statement" in text


def test_a_wrong_rate_is_refused_with_the_field_named_and_nothing_stored(finance_client, cny):
    response = finance_client.post(
        "/rates/", {"from_currency": "CNY", "to_currency": "CNY", "rate": "0", "effective_from": "soon"}
    )

    assert response.status_code == 400
    page = response.content.decode()
    for problem in [
        "Rate: A rate is a positive number.",
        "To (the account&#x27;s currency): A rate converts between two different currencies.",
        "Effective from: Enter a valid date/time.",
    ]:
        assert problem in page, problem
    assert not ExchangeRate.objects.exists()


def test_engineers_cannot_enter_rates(engineer_client, cny):
    assert engineer_client.get("/rates/").status_code == 403
    assert engineer_client.post("/rates/", {}).status_code == 403


def test_the_admin_records_who_entered_a_rate_and_never_edits_one(cny, django_user_model):
    admin_client = Client()
    admin_client.force_login(django_user_model.objects.create_superuser("ada", "ada@example.com", "pw-for-tests"))
    response = admin_client.post(
        "/admin/usage/exchangerate/add/",
        {"from_currency": "USD", "to_currency": "CNY", "rate": "7.1", "effective_from_0": "2026-11-01",
         "effective_from_1": "00:00:00", "note": ""},
    )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = ExchangeRate.objects.get()
    assert (entry.source, entry.entered_by.username) == (RateSource.ADMIN, "ada")
    change = admin_client.post(f"/admin/usage/exchangerate/{entry.pk}/change/", {"rate": "9"})
    assert change.status_code == 403
    assert ExchangeRate.objects.get().rate == Decimal("7.1")


# --- Where converted figures appear -------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "url"),
    [
        ("finance_client", "/?period=custom&start=2026-11-01&end=2026-11-30"),
        ("engineer_client", "/models/?period=custom&start=2026-11-01&end=2026-11-30"),
        ("finance_client", "/reports/?month=2026-11"),
    ],
)
def test_pages_say_which_rates_their_usage_value_was_converted_at(request, cny, client, url):
    rate("7.12", NOV_1)
    rate("7.20", NOV_15)
    ingest(cny, call("a", NOV_1 + timedelta(days=2)), call("b", NOV_15 + timedelta(days=2)))
    browser = request.getfixturevalue(client)

    page = browser.get(url + f"&account={cny.slug}").content.decode()

    note = re.search(r'id="rates-applied">(.*?)</p>', page, re.S)
    assert note, "no conversion note"
    assert " ".join(re.sub(r"<[^>]+>", "", note.group(1)).split()) == (
        "Converted from USD at 7.12 (from 1 Nov 2026), 7.2 (from 15 Nov 2026)"
    )


def test_a_real_worker_revalues_the_records_after_finance_enters_a_rate(worker, transactional_db, make_user):  # noqa: F811
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=INPUT, output_per_mtok=OUTPUT, currency="USD",
        effective_from=datetime(2000, 1, 1, tzinfo=UTC), source=PriceSource.GENAI_PRICES,
    )  # fmt: skip
    account = create_account(name="Shanghai", slug="sh-tx", currency="CNY")
    ingest(account, call("a", NOV_1 + timedelta(days=2)), call("b", NOV_1 + timedelta(days=20)))
    user = make_user("fiona-tx", Role.FINANCE)
    Membership.objects.create(account=account, user=user)
    finance = Client()
    finance.force_login(user)

    response = finance.post(
        "/rates/", {"from_currency": "USD", "to_currency": "CNY", "rate": "7.12", "effective_from": "2026-11-01T00:00"}
    )
    assert response.status_code == 302

    deadline = time.monotonic() + 40
    while UsageRecord.objects.filter(account=account, cost__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not UsageRecord.objects.filter(account=account, cost__isnull=True).exists(), "not revalued within 40 s"
    assert rollups.verify(account) == []
    assert not RepricingRun.objects.filter(account=account, finished_at__isnull=True).exists()
