"""A price added, changed or deleted reprices the records it affects, in the
background, and the hourly rollup stays equal to a recount of the records.

`repricing_runs_after_commit` (tests/usage/conftest.py) runs the Celery task in-process
when the test's transaction would commit; the real-worker path is tested elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from tests.usage.test_pricing import (
    JAN_1,
    WHEN,
    add_price,
    cost,
    ingest,
    money,
    rollup_cost_and_unpriced,
    usage_record,
)
from usage import rollups, selectors
from usage.models import Account, ModelPrice, PriceSource, RepricingRun, UsageRecord
from usage.pricing import repricing
from usage.pricing.list_prices import sync_prices
from usage.pricing.repricing import Scope
from usage.services import create_account


def three_qwen_calls(account: Any) -> None:
    ingest(
        account,
        usage_record("q1", model="qwen-max", prompt=1000, completion=500, api_key="prod"),
        usage_record("q2", model="qwen-max", prompt=2000, completion=0, at=WHEN + timedelta(hours=2)),
        usage_record("q3", model="qwen-max", prompt=0, completion=1000, at=WHEN + timedelta(days=3), api_key="dev"),
    )


def test_adding_a_price_reprices_unpriced_records_and_the_rollup_equals_a_recount(account, repricing_runs_after_commit):
    three_qwen_calls(account)
    assert rollup_cost_and_unpriced(account) == (0, 3)

    with repricing_runs_after_commit():
        price = add_price("qwen-max", "2", "6")

    assert [cost(r) for r in ("q1", "q2", "q3")] == [Decimal("0.005"), Decimal("0.004"), Decimal("0.006")]
    assert set(UsageRecord.objects.values_list("price", "cost_source")) == {(price.pk, "computed")}
    assert rollup_cost_and_unpriced(account) == (Decimal("0.015"), 0)
    assert rollups.verify(account) == []


def test_changing_a_price_reprices_its_records(account, repricing_runs_after_commit):
    price = add_price("qwen-max", "2", "6")
    three_qwen_calls(account)

    with repricing_runs_after_commit():
        price.input_per_mtok = Decimal("4")
        price.save()

    assert [cost(r) for r in ("q1", "q2", "q3")] == [Decimal("0.007"), Decimal("0.008"), Decimal("0.006")]
    assert rollup_cost_and_unpriced(account) == (Decimal("0.021"), 0)
    assert rollups.verify(account) == []


def test_moving_a_price_window_reprices_records_it_no_longer_covers(account, repricing_runs_after_commit):
    price = add_price("qwen-max", "2", "6")
    three_qwen_calls(account)

    with repricing_runs_after_commit():
        price.effective_from = WHEN + timedelta(days=1)  # now only q3 is in its window
        price.save()

    assert [cost(r) for r in ("q1", "q2", "q3")] == [None, None, Decimal("0.006")]
    assert rollup_cost_and_unpriced(account) == (Decimal("0.006"), 2)
    assert rollups.verify(account) == []


def test_renaming_a_price_pattern_reprices_the_old_and_the_new_model(account, repricing_runs_after_commit):
    price = add_price("qwen-max", "2", "6")
    three_qwen_calls(account)
    ingest(account, usage_record("plus", model="qwen-plus", prompt=1000))

    with repricing_runs_after_commit():
        price.model_pattern = "qwen-plus"
        price.save()

    assert [cost(r) for r in ("q1", "q2", "q3", "plus")] == [None, None, None, Decimal("0.002")]
    assert rollup_cost_and_unpriced(account) == (Decimal("0.002"), 3)
    assert rollups.verify(account) == []


def test_a_new_exact_price_takes_over_from_a_pattern(account, repricing_runs_after_commit):
    add_price("qwen-*", "1", "1")
    three_qwen_calls(account)

    with repricing_runs_after_commit():
        add_price("qwen-max", "2", "6")

    assert cost("q1") == Decimal("0.005")
    assert rollups.verify(account) == []


def test_deleting_a_price_leaves_its_records_unpriced_or_priced_by_the_next_price(account, repricing_runs_after_commit):
    add_price("qwen-*", "1", "1")
    exact = add_price("qwen-max", "2", "6")
    three_qwen_calls(account)
    ingest(account, usage_record("plus", model="qwen-plus", prompt=1000))

    with repricing_runs_after_commit():
        exact.delete()
        ModelPrice.objects.filter(model_pattern="qwen-*").first().delete()

    assert [cost(r) for r in ("q1", "q2", "q3", "plus")] == [None, None, None, None]
    assert rollup_cost_and_unpriced(account) == (0, 4)
    assert rollups.verify(account) == []


def test_reported_costs_are_never_repriced(account, repricing_runs_after_commit):
    ingest(
        account,
        usage_record("reported", model="qwen-max", cost="0.5"),
        usage_record("computed", model="qwen-max"),
    )

    with repricing_runs_after_commit():
        add_price("qwen-max", "2")

    assert UsageRecord.objects.get(request_id="reported").cost_source == "reported"
    assert (cost("reported"), cost("computed")) == (Decimal("0.5"), Decimal("2"))
    assert rollups.verify(account) == []


def test_a_call_without_any_token_count_stays_unpriced_like_at_ingestion(account, repricing_runs_after_commit):
    ingest(account, {"request_id": "blank", "occurred_at": WHEN.isoformat(), "model": "qwen-max"})

    with repricing_runs_after_commit():
        add_price("qwen-max", "2")

    assert cost("blank") is None
    assert rollups.verify(account) == []


def test_a_price_of_another_account_or_currency_reprices_nothing(account, repricing_runs_after_commit):
    other = create_account(name="Other", slug="other", currency="USD")
    euros = create_account(name="Euros", slug="euros", currency="EUR")
    three_qwen_calls(account)
    ingest(euros, usage_record("eur", model="qwen-max"))

    with repricing_runs_after_commit():
        add_price("qwen-max", "2", account=other)
        add_price("qwen-max", "3", currency="GBP")

    assert set(UsageRecord.objects.values_list("cost", flat=True)) == {None}
    assert not RepricingRun.objects.exists()


def test_saving_a_price_enqueues_one_repricing_after_commit_and_an_unchanged_save_none(
    db, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        price = add_price("qwen-max", "2")
    assert len(enqueued) == 1

    with django_capture_on_commit_callbacks() as enqueued:
        price.save()
    assert enqueued == []


def test_repricing_twice_changes_nothing_the_second_time(account):
    three_qwen_calls(account)
    price = add_price("qwen-max", "2", "6")

    assert repricing.reprice([Scope.of(price)]) == 3
    before = rollups.stored(account)

    assert repricing.reprice([Scope.of(price)]) == 0
    assert rollups.stored(account) == before


def test_repricing_goes_in_chunks_and_pages_see_the_records_remaining(account, monkeypatch):
    three_qwen_calls(account)
    ingest(account, *(usage_record(f"x{i}", model="qwen-max", at=WHEN + timedelta(minutes=i)) for i in range(2)))
    price = add_price("qwen-max", "2", "6")
    seen: list[int | None] = []
    reprice_chunk = repricing.reprice_chunk

    def watching(records: Any, book: Any) -> int:
        seen.append(remaining(account))
        return reprice_chunk(records, book)

    monkeypatch.setattr(repricing, "reprice_chunk", watching)
    assert remaining(account) is None

    assert repricing.reprice([Scope.of(price)], chunk_size=2) == 5

    assert seen == [5, 3, 1]
    assert remaining(account) is None
    run = RepricingRun.objects.get()
    assert (run.total, run.done, run.changed, run.finished_at is not None) == (5, 5, 5, True)
    assert rollups.verify(account) == []


def remaining(account: Account) -> int | None:
    """Records the running repricing jobs have still to re-cost; None when none runs."""
    progress = selectors.repricing_progress(account)
    return None if progress is None else progress.remaining


def test_a_repricing_run_that_stopped_updating_is_no_longer_shown(account):
    RepricingRun.objects.create(account=account, total=10, done=4)
    assert remaining(account) == 6

    RepricingRun.objects.update(updated_at=timezone.now() - RepricingRun.STALE_AFTER - timedelta(seconds=1))
    assert remaining(account) is None


def test_sync_prices_reprices_the_records_of_the_prices_it_adds(account, repricing_runs_after_commit):
    ingest(
        account,
        usage_record("old", model="gpt-4o", at=datetime(2025, 3, 1, tzinfo=UTC), prompt=1000),
        usage_record("new", model="gpt-4o-mini", prompt=1000),
        usage_record("unknown", model="in-house-model", prompt=1000),
    )
    add_price("gpt-4o-mini", "1", source=PriceSource.MANUAL, start=JAN_1)

    with repricing_runs_after_commit():
        sync_prices()

    assert cost("old") == money(Decimal("0.0025"))  # genai-prices' $2.50 per million input tokens
    assert cost("new") == Decimal("0.001")  # the manual price still wins
    assert cost("unknown") is None
    assert rollups.verify(account) == []
