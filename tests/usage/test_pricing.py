"""The price book (which price applies, what a request costs) and `manage.py sync_prices`.

The helpers at the top are shared with test_repricing.py: records go through the
real ingestion path (`record_usage`), prices are plain ModelPrice rows.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Sum
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices import types as gp

from usage import rollups
from usage.models import Account, HourlyUsage, ModelPrice, PriceSource, UsageRecord
from usage.pricing.list_prices import BEGINNING, listed_prices, sync_prices
from usage.pricing.price_book import PriceBook
from usage.schemas import RecordIn
from usage.services import create_account, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
WHEN = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
MILLION = 1_000_000


def add_price(
    pattern: str,
    input_rate: str,
    output_rate: str = "0",
    *,
    cached_rate: str | None = None,
    account: Account | None = None,
    source: str = PriceSource.MANUAL,
    start: datetime = JAN_1,
    end: datetime | None = None,
    currency: str = "USD",
) -> ModelPrice:
    return ModelPrice.objects.create(
        model_pattern=pattern,
        input_per_mtok=Decimal(input_rate),
        cached_input_per_mtok=Decimal(cached_rate) if cached_rate is not None else None,
        output_per_mtok=Decimal(output_rate),
        account=account,
        source=source,
        effective_from=start,
        effective_to=end,
        currency=currency,
    )


def usage_record(
    request_id: str,
    *,
    model: str = "gpt-4o",
    at: datetime = WHEN,
    prompt: int = MILLION,
    completion: int = 0,
    cached: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return {"request_id": request_id, "occurred_at": at.isoformat(), "model": model, "usage": usage} | extra


def ingest(account: Account, *records: dict[str, Any]) -> None:
    result = record_usage(account, [(i, RecordIn.model_validate(r)) for i, r in enumerate(records)], source="api")
    assert result.accepted == len(records)


def cost(request_id: str, account: Account | None = None) -> Decimal | None:
    records = UsageRecord.objects.filter(request_id=request_id)
    return money((records.filter(account=account) if account else records).get().cost)


def money(value: Decimal | float | int | None) -> Decimal | None:
    """To a hundred-millionth: SQLite keeps decimals as floating point."""
    return None if value is None else Decimal(value).quantize(Decimal("1e-8"))


def rollup_cost_and_unpriced(account: Account, model: str | None = None) -> tuple[Decimal | None, int]:
    rows = HourlyUsage.objects.filter(account=account)
    if model is not None:
        rows = rows.filter(model=model)
    sums = rows.aggregate(cost=Sum("cost"), unpriced=Sum("unpriced_requests"))
    return money(sums["cost"] or 0), sums["unpriced"] or 0


# --- Which price applies ------------------------------------------------------------


def test_the_price_in_effect_when_the_request_happened_applies(account):
    june = datetime(2026, 6, 1, tzinfo=UTC)
    add_price("gpt-4o", "1", end=june)
    add_price("gpt-4o", "2", start=june)

    ingest(
        account,
        usage_record("before", at=june - timedelta(microseconds=1)),
        usage_record("at-the-change", at=june),
    )

    assert cost("before") == Decimal(1)
    assert cost("at-the-change") == Decimal(2)


def test_no_price_applies_before_the_first_price_starts(account):
    add_price("gpt-4o", "1", start=JAN_1)

    ingest(account, usage_record("early", at=JAN_1 - timedelta(days=1)))

    assert cost("early") is None


def test_an_exact_name_beats_a_pattern_and_a_longer_pattern_beats_a_shorter_one(account):
    add_price("gpt-*", "9")
    add_price("gpt-4o*", "5")
    add_price("gpt-4o", "1")

    ingest(
        account,
        usage_record("exact", model="gpt-4o"),
        usage_record("long-pattern", model="gpt-4o-mini"),
        usage_record("short-pattern", model="gpt-5"),
    )

    assert (cost("exact"), cost("long-pattern"), cost("short-pattern")) == (1, 5, 9)


def test_an_account_price_beats_a_shared_one_for_that_account_only(account):
    other = create_account(name="Other", slug="other", currency="USD")
    add_price("gpt-4o", "1")
    add_price("gpt-4o*", "3", account=account)  # even as a pattern against a shared exact name

    ingest(account, usage_record("mine"))
    ingest(other, usage_record("theirs"))

    assert cost("mine", account) == 3
    assert cost("theirs", other) == 1


def test_a_manual_price_beats_a_genai_prices_one_for_the_same_model(account):
    add_price("gpt-4o", "7", source=PriceSource.MANUAL, start=JAN_1)
    # Newer, so the latest-start rule alone would pick it.
    add_price("gpt-4o", "2.5", source=PriceSource.GENAI_PRICES, start=JAN_1 + timedelta(days=30))

    ingest(account, usage_record("r"))

    assert cost("r") == 7


def test_a_manual_pattern_beats_a_genai_prices_exact_name(account):
    add_price("gpt-4o", "2.5", source=PriceSource.GENAI_PRICES)
    add_price("gpt-4o*", "4", source=PriceSource.MANUAL)

    assert PriceBook.for_account(account).find("gpt-4o", WHEN).input_per_mtok == 4


def test_a_provider_price_beats_genai_prices_and_loses_to_manual(account):
    add_price("gpt-4o", "2.5", source=PriceSource.GENAI_PRICES)
    add_price("gpt-4o", "3", source=PriceSource.PROVIDER)
    assert PriceBook.for_account(account).find("gpt-4o", WHEN).input_per_mtok == 3

    add_price("gpt-4o", "4", source=PriceSource.MANUAL)
    assert PriceBook.for_account(account).find("gpt-4o", WHEN).input_per_mtok == 4


def test_a_price_in_another_currency_does_not_apply(account):
    add_price("gpt-4o", "1", currency="EUR")

    ingest(account, usage_record("r"))

    assert cost("r") is None


# --- What a request costs --------------------------------------------------------------


def test_cached_tokens_are_charged_at_the_cached_rate_and_the_rest_of_the_prompt_at_the_input_rate(account):
    add_price("gpt-4o", "2", "8", cached_rate="0.5")

    ingest(account, usage_record("r", prompt=1000, cached=400, completion=100))

    # (600 × 2 + 400 × 0.5 + 100 × 8) per million tokens
    assert cost("r") == Decimal("0.0022")


def test_without_a_cached_rate_cached_tokens_are_charged_at_the_input_rate(account):
    add_price("gpt-4o", "2", "8")

    ingest(account, usage_record("r", prompt=1000, cached=400, completion=100))

    assert cost("r") == Decimal("0.0028")


def test_a_model_without_a_price_stays_unpriced_and_counts_as_unpriced_in_the_rollup(account):
    add_price("gpt-4o", "1")

    ingest(account, usage_record("priced"), usage_record("a", model="qwen-max"), usage_record("b", model="qwen-max"))

    assert (cost("a"), cost("b")) == (None, None)
    assert rollup_cost_and_unpriced(account, "qwen-max") == (0, 2)
    assert rollup_cost_and_unpriced(account, "gpt-4o") == (1, 0)
    assert rollups.verify(account) == []


# --- sync_prices -------------------------------------------------------------------------


def sync(*args: str) -> str:
    out = StringIO()
    call_command("sync_prices", *args, stdout=out)
    return out.getvalue()


def counts(output: str) -> tuple[int, int, int]:
    found = re.search(r"(\d+) added, (\d+) changed, (\d+) unchanged", output)
    assert found, output
    added, changed, unchanged = (int(n) for n in found.groups())
    return added, changed, unchanged


def genai_rows() -> list[tuple[Any, ...]]:
    return list(
        ModelPrice.objects.filter(source=PriceSource.GENAI_PRICES)
        .order_by("model_pattern", "effective_from")
        .values_list(
            "model_pattern",
            "input_per_mtok",
            "cached_input_per_mtok",
            "output_per_mtok",
            "effective_from",
            "effective_to",
        )
    )


@pytest.mark.django_db
def test_sync_prices_seeds_every_listed_price_and_a_second_run_changes_nothing():
    first = counts(sync())
    rows = genai_rows()

    second = counts(sync())

    assert first[0] == len(rows) > 500
    assert first[1:] == (0, 0)
    assert second == (0, 0, len(rows))
    assert genai_rows() == rows
    shared_usd = ModelPrice.objects.filter(account__isnull=True, currency="USD", effective_from=BEGINNING)
    assert shared_usd.count() == len(rows)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("toki_name", "at"),
    [
        ("gpt-4o", WHEN),
        ("gpt-4o-mini", WHEN),
        ("claude-sonnet-4", WHEN),
        ("claude-sonnet-4-20250514", WHEN),  # through the glob claude-sonnet-4-2025*
        ("deepseek-chat", datetime(2026, 11, 20, 9, tzinfo=UTC)),  # inside DeepSeek's standard-price hours
        ("gemini-2.5-pro", WHEN),
    ],
)
def test_sync_prices_prices_toki_model_names_as_genai_prices_does(account, toki_name, at):
    sync_prices()
    usage = Usage(input_tokens=1000, cache_read_tokens=200, output_tokens=300)
    expected = calc_price(usage, toki_name, genai_request_timestamp=at).total_price

    ingest(account, usage_record("r", model=toki_name, at=at, prompt=1000, cached=200, completion=300))

    assert cost("r") == money(expected)


@pytest.mark.django_db
def test_sync_prices_never_touches_manual_or_provider_prices(account):
    manual = add_price("gpt-4o", "7", "7", source=PriceSource.MANUAL)
    provider = add_price("gpt-4o-mini", "6", "6", source=PriceSource.PROVIDER)
    before = list(ModelPrice.objects.filter(pk__in=[manual.pk, provider.pk]).values())

    sync_prices()
    sync_prices()

    assert list(ModelPrice.objects.filter(pk__in=[manual.pk, provider.pk]).values()) == before
    book = PriceBook.for_account(account)
    assert book.find("gpt-4o", WHEN).pk == manual.pk
    assert book.find("gpt-4o-mini", WHEN).pk == provider.pk


@pytest.fixture
def genai_data() -> Iterator[list[gp.Provider]]:
    """A copy of the installed genai-prices data, served through genai-prices' own
    custom-snapshot hook; the test edits the copy like an upgrade of the package would."""
    providers = copy.deepcopy(data_snapshot.get_snapshot().providers)
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=providers, from_auto_update=False))
    try:
        yield providers
    finally:
        data_snapshot.set_custom_snapshot(None)


def genai_model(providers: list[gp.Provider], provider_id: str, model_id: str) -> gp.ModelInfo:
    provider = next(p for p in providers if p.id == provider_id)
    return next(m for m in provider.models if m.id == model_id)


@pytest.mark.django_db
def test_sync_prices_keeps_history_when_genai_prices_changes_a_price(genai_data):
    first_sync = datetime(2026, 11, 1, 8, tzinfo=UTC)
    # Same UTC day: genai-prices' own dated and time-of-day prices give the same answer.
    upgrade = first_sync + timedelta(hours=1)
    sync_prices(now=first_sync)
    seeded = genai_rows()
    genai_model(genai_data, "openai", "gpt-4o").prices = gp.ModelPrice(
        input_mtok=Decimal("3"), cache_read_mtok=Decimal("1.5"), output_mtok=Decimal("12")
    )

    result = sync_prices(now=upgrade)

    # genai-prices' gpt-4o entry matches these three names exactly.
    renamed = {"gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"}
    assert (result.added, result.changed, result.unchanged) == (0, len(renamed), len(seeded) - len(renamed))
    started = ModelPrice.objects.filter(source=PriceSource.GENAI_PRICES, effective_from=upgrade)
    assert set(started.values_list("model_pattern", flat=True)) == renamed
    history = ModelPrice.objects.filter(model_pattern="gpt-4o", source=PriceSource.GENAI_PRICES)
    assert [
        (p.effective_from, p.effective_to, p.input_per_mtok, p.output_per_mtok)
        for p in history.order_by("effective_from")
    ] == [
        (BEGINNING, upgrade, Decimal("2.5"), Decimal("10")),
        (upgrade, None, Decimal("3"), Decimal("12")),
    ]
    book = PriceBook.for_account(create_account(name="A", slug="a"))
    assert book.find("gpt-4o", upgrade - timedelta(microseconds=1)).input_per_mtok == Decimal("2.5")
    assert book.find("gpt-4o", upgrade).input_per_mtok == Decimal("3")

    again = sync_prices(now=upgrade + timedelta(minutes=5))

    assert (again.added, again.changed, again.unchanged) == (0, 0, len(seeded))
    assert len(genai_rows()) == len(seeded) + len(renamed)


@pytest.mark.django_db
def test_sync_prices_takes_the_base_tier_and_the_price_of_most_of_the_day(genai_data):
    acme = gp.Provider(
        id="acme",
        name="Acme",
        api_pattern=r"https://api\.acme\.test",
        model_match=gp.ClauseStartsWith(starts_with="acme-"),
        models=[
            gp.ModelInfo(
                id="acme-tiered",
                match=gp.ClauseEquals(equals="acme-tiered"),
                prices=gp.ModelPrice(
                    input_mtok=gp.TieredPrices(base=Decimal("1"), tiers=[gp.Tier(start=200_000, price=Decimal("2"))]),
                    output_mtok=gp.TieredPrices(base=Decimal("4"), tiers=[gp.Tier(start=200_000, price=Decimal("8"))]),
                ),
            ),
            gp.ModelInfo(
                id="acme-offpeak",
                match=gp.ClauseStartsWith(starts_with="acme-offpeak"),
                prices=[
                    gp.ConditionalPrice(prices=gp.ModelPrice(input_mtok=Decimal("0.5"), output_mtok=Decimal("1"))),
                    gp.ConditionalPrice(
                        constraint=gp.TimeOfDateConstraint(
                            start_time=time(0, 30, tzinfo=UTC), end_time=time(16, 30, tzinfo=UTC)
                        ),
                        prices=gp.ModelPrice(input_mtok=Decimal("1"), output_mtok=Decimal("2")),
                    ),
                ],
            ),
        ],
    )
    genai_data.insert(0, acme)

    listed = listed_prices(WHEN)

    tiered, offpeak = listed["acme-tiered"], listed["acme-offpeak*"]
    assert (tiered.input_per_mtok, tiered.output_per_mtok) == (Decimal("1"), Decimal("4"))
    # The standard rate holds 16 hours a day, the discount 8: one row cannot hold both.
    assert (offpeak.input_per_mtok, offpeak.output_per_mtok) == (Decimal("1"), Decimal("2"))
