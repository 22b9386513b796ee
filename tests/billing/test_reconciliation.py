"""Reconciliation: the change in the provider's balance against what the dashboard charged,
with likely causes when they drift apart."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import selectors, sync
from billing.models import BalanceSnapshot, BillingState, SyncState
from billing.signals import balance_drift
from tests.billing.conftest import FINANCE, allocate, at, ingest, record, top_up
from tests.billing.fake_console import LogRow
from usage.models import ModelPrice
from usage.schemas import validate_records
from usage.services import record_usage


def snapshot(account, when, balance: str, requests: int | None = None) -> None:
    BalanceSnapshot.objects.create(
        account=account,
        taken_at=when,
        balance=Decimal(balance),
        currency="USD",
        request_count=requests,
        source="manual",
    )


@pytest.fixture
def day_of_usage(account):
    """100 in the wallet, a 20 top-up at noon, three requests costing 3.00 in all, no plans."""
    top_up(account, "opening", "100", at(1))
    top_up(account, "noon", "20", at(2, 12))
    ingest(
        account,
        record("r1", at(2, 9), "gpt-4o", 100, 10, "1.25"),
        record("r2", at(2, 14), "gpt-4o", 100, 10, "0.75"),
        record("r3", at(2, 20), "claude-sonnet-4", 100, 10, "1.00"),
    )
    allocate(account, at(5))
    return account


def test_a_balance_that_moved_as_computed_shows_no_drift(day_of_usage):
    snapshot(day_of_usage, at(2), "100", requests=500)
    snapshot(day_of_usage, at(3), "117.00", requests=503)

    result = selectors.reconcile(day_of_usage, start=at(2), end=at(3))

    assert (result.ledger_entries, result.provider_consumption, result.dashboard_consumption) == (
        Decimal("20"), Decimal("3.00"), Decimal("3.00")
    )  # fmt: skip
    assert result.drift == 0 and not result.exceeds_threshold and result.causes == []
    assert (result.provider_requests, result.dashboard_requests) == (3, 3)


def test_a_provider_that_counted_more_requests_points_at_missing_records(day_of_usage):
    snapshot(day_of_usage, at(2), "100", requests=500)
    snapshot(day_of_usage, at(3), "115.00", requests=505)

    result = selectors.reconcile(day_of_usage, start=at(2), end=at(3))

    assert result.drift == Decimal("2.00") and result.threshold == Decimal("1")
    assert result.exceeds_threshold
    assert result.causes[0].code == "missing_records"
    assert "505" not in result.causes[0].message and "5 requests" in result.causes[0].message


def test_the_same_requests_at_another_cost_point_at_prices(day_of_usage):
    snapshot(day_of_usage, at(2), "100", requests=500)
    snapshot(day_of_usage, at(3), "118.50", requests=503)

    result = selectors.reconcile(day_of_usage, start=at(2), end=at(3))

    assert result.drift == Decimal("-1.50")
    assert [c.code for c in result.causes] == ["price_mismatch"]
    assert "less" in result.causes[0].message


def test_unpriced_records_are_a_likely_cause(account):
    top_up(account, "opening", "10", at(1))
    ingest(account, record("r1", at(2, 9), "doubao-pro", 100, 10, None))
    allocate(account, at(5))
    snapshot(account, at(2), "10")
    snapshot(account, at(3), "7.5")

    result = selectors.reconcile(account, start=at(2), end=at(3))

    assert result.dashboard_consumption == 0
    assert "unpriced_records" in [c.code for c in result.causes]


def test_the_threshold_is_the_larger_of_an_amount_and_a_share_of_consumption(day_of_usage):
    BillingState.objects.update_or_create(
        account=day_of_usage, defaults={"drift_threshold_amount": Decimal("0.10"), "drift_threshold_percent": 10}
    )
    snapshot(day_of_usage, at(2), "100")
    snapshot(day_of_usage, at(3), "116.75")

    result = selectors.reconcile(day_of_usage, start=at(2), end=at(3))

    assert result.threshold == Decimal("0.3")  # 10% of 3.00 beats 0.10
    assert result.drift == Decimal("0.25") and not result.exceeds_threshold


def test_without_two_snapshots_there_is_nothing_to_reconcile(day_of_usage):
    snapshot(day_of_usage, at(2), "100")

    assert selectors.reconcile(day_of_usage, start=at(1), end=at(3)) is None


def test_a_drift_over_the_threshold_is_signalled_and_kept_on_the_sync_state(day_of_usage):
    snapshot(day_of_usage, at(2), "100", requests=500)
    snapshot(day_of_usage, at(3), "110.00", requests=503)
    received: list = []

    def listener(sender, account, reconciliation, **kwargs):
        received.append((account, reconciliation.drift))

    balance_drift.connect(listener)
    try:
        sync.check_drift(day_of_usage, now=at(3))
    finally:
        balance_drift.disconnect(listener)

    assert received == [(day_of_usage, Decimal("7.00"))]
    state = SyncState.objects.get(account=day_of_usage)
    assert (state.drift, state.drift_exceeded, state.drift_checked_at) == (Decimal("7.00"), True, at(3))


def test_each_sync_reconciles_the_consoles_balance_with_the_usage_it_brought(newapi_account, console, settings):
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=Decimal("2"), output_per_mtok=Decimal("8"), effective_from=at(1)
    )
    first = sync.sync_account(newapi_account)
    while time.time() < first.started_at.timestamp() + 1.1:  # the new rows are after the first balance
        time.sleep(0.05)
    now = int(timezone.now().timestamp())
    console.add_logs(
        *(LogRow(created_at=now, model_name="gpt-4o", prompt_tokens=100_000, completion_tokens=10_000, quota=140_000,
                 request_id=f"req-{i}") for i in range(5))
    )  # fmt: skip
    # Each call costs 0.2 + 0.08 = 0.28 in the price book; the console took 0.28 + 10%.
    console.state.quota -= 5 * 154_000
    console.state.request_count += 5

    second = sync.sync_account(newapi_account)

    assert second.ok and second.records_ingested == 5
    state = SyncState.objects.get(account=newapi_account)
    assert state.drift == Decimal("0.14")  # 5 × 0.028
    assert not state.drift_exceeded
    result = selectors.reconcile(newapi_account, start=first.started_at, end=timezone.now())
    assert (result.provider_consumption, result.dashboard_consumption) == (Decimal("1.54"), Decimal("1.40"))
    assert (result.provider_requests, result.dashboard_requests) == (5, 5)


def test_manual_balances_recorded_by_finance_are_reconciled_too(day_of_usage):
    from billing.services import record_manual_balance

    record_manual_balance(day_of_usage, balance=Decimal("100"), taken_at=at(2), actor=FINANCE)
    record_manual_balance(day_of_usage, balance=Decimal("117"), taken_at=at(3), actor=FINANCE, note="console")

    result = selectors.reconcile(day_of_usage, start=at(2) - timedelta(hours=1), end=at(3))

    assert result.drift == 0


def test_calls_two_sources_both_brought_are_reported_as_overlap_and_counted_once(account):
    top_up(account, "opening", "100", at(1))
    proxied = [record(f"proxy-{i}", at(2, 9 + i), "gpt-4o", 100, 10, "1.00", upstream_request_id=f"rid-{i}")
               for i in range(3)]  # fmt: skip
    valid = validate_records(proxied)[0]
    record_usage(account, valid, source="proxy")
    synced = [record(f"rid-{i}", at(2, 9 + i), "gpt-4o", 100, 10, "1.00", upstream_request_id=f"rid-{i}")
              for i in range(1, 4)]  # fmt: skip
    record_usage(account, validate_records(synced)[0], source="sync")
    allocate(account, at(5))
    snapshot(account, at(2), "100", requests=500)
    snapshot(account, at(3), "96.00", requests=504)

    result = selectors.reconcile(account, start=at(2), end=at(3))

    assert [(o.counted_by, o.seen_by, o.calls) for o in result.overlap] == [("proxy", "sync", 2)]
    assert result.calls_seen_twice == 2
    assert (result.dashboard_requests, result.dashboard_consumption, result.drift) == (4, Decimal("4.00"), 0)
