"""Currencies: an account is valued in its own currency; a price in another currency is
converted at the exchange rate in effect when the request was made; no rate is unpriced."""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from toki_dashboard.roles import Role
from usage import rollups
from usage.exchange import rates_applied
from usage.models import (
    ExchangeRate,
    Membership,
    ModelPrice,
    PriceSource,
    RateSource,
    RepricingRun,
    TokenScope,
    UsageRecord,
)
from usage.pricing import COST_QUANTUM
from usage.schemas import validate_records
from usage.services import create_account, create_api_token, record_usage, set_exchange_rate

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


def test_each_record_is_converted_at_the_rate_in_effect_at_its_time_and_every_figure_agrees(cny):
    first, second = rate("7.12", NOV_1), rate("7.20", NOV_15)
    calls = [call(f"r{day}", NOV_1 + timedelta(days=day, hours=5), prompt=1000 * (day + 1)) for day in range(30)]
    ingest(cny, call("before", NOV_1 - timedelta(hours=1)), *calls)

    for body in calls:
        record = UsageRecord.objects.get(request_id=body["request_id"])
        expected_rate = first if record.occurred_at < NOV_15 else second
        prompt = body["usage"]["prompt_tokens"]
        assert record.exchange_rate == expected_rate
        assert record.cost == (usd(prompt, 1000) * expected_rate.rate).quantize(COST_QUANTUM)
    assert UsageRecord.objects.get(request_id="before").cost is None  # no rate yet: unpriced
    assert rollups.verify(cny) == []
    month_total = sum(
        UsageRecord.objects.filter(request_id__in=[c["request_id"] for c in calls]).values_list("cost", flat=True)
    )
    token = create_api_token(account=cny, name="reader", scopes=[TokenScope.READ])[1]
    summary = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(
        "/api/v1/usage/summary", {"start": "2026-11-01", "end": "2026-11-30", "group_by": "day"}
    ).json()  # fmt: skip
    assert (summary["currency"], Decimal(summary["total"]["cost"])) == ("CNY", month_total)
    assert sum(Decimal(row["cost"]) for row in summary["rows"]) == month_total
    applied = rates_applied(cny, NOV_1, DEC_1)
    assert [(r.from_currency, r.rate, r.effective_from) for r in applied] == [
        ("USD", Decimal("7.12"), NOV_1),
        ("USD", Decimal("7.20"), NOV_15),
    ]
    assert [r.rate for r in rates_applied(cny, NOV_1, NOV_15)] == [Decimal("7.12")]


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
        "Converted from USD at 7.12 (from 1 Nov), 7.2 (from 15 Nov)"
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
