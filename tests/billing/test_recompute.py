"""What makes allocations stale, and how a refresh finds it: new and late records,
expiries passing, repricing, and records a lost task left behind."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing import recompute, tasks
from billing.models import Allocation, BillingState, PlanExpiry, RecomputeRequest
from billing.recompute import refresh_allocations
from tests.billing.conftest import allocate, at, buy, ingest, record
from usage.models import ModelPrice, UsageRecord
from usage.pricing.repricing import Scope, reprice


def test_new_records_are_allocated_by_the_next_refresh_without_being_asked(account):
    buy(account, "p", 1000, at(1), at(20))
    allocate(account, at(25))

    ingest(account, record("r1", at(2), "gpt-4o", 100, 0, "0.1"))
    result = refresh_allocations(account, now=at(25))

    assert result.checkpoint == at(2)
    assert list(Allocation.objects.values_list("record__request_id", "tokens")) == [("r1", 100)]


def test_a_refresh_with_nothing_to_do_writes_nothing(account):
    ingest(account, record("r1", at(2), "gpt-4o", 100, 0, "0.1"))
    allocate(account, at(25))

    result = refresh_allocations(account, now=at(25))

    assert result.checkpoint is None
    assert Allocation.objects.count() == 1


def test_an_expiry_that_passes_without_new_records_is_recorded_by_a_later_refresh(account):
    buy(account, "p", 1000, at(1), at(10))
    ingest(account, record("r1", at(2), "gpt-4o", 300, 0, "0.1"))
    allocate(account, at(5))
    assert not PlanExpiry.objects.exists()

    refresh_allocations(account, now=at(11))

    assert list(PlanExpiry.objects.values_list("tokens", "expired_at")) == [(700, at(10))]
    assert refresh_allocations(account, now=at(12)).checkpoint is None  # recorded once


def test_a_repricing_moves_the_wallet_charges_of_the_records_it_changed(account):
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("1"), effective_from=at(1)
    )
    ingest(account, record("r1", at(2), "gpt-4o", 1_000_000, 0, None), record("r2", at(3), "gpt-4o", 500_000, 0, None))
    allocate(account, at(25))
    assert sorted(Allocation.objects.values_list("amount", flat=True)) == [Decimal("0.5"), Decimal("1")]

    price = ModelPrice.objects.get()
    price.input_per_mtok = Decimal("3")
    price.save()
    reprice([Scope.of(price)])  # what the repricing task does
    result = refresh_allocations(account, now=at(25))

    assert result.checkpoint == at(2)
    assert sorted(Allocation.objects.values_list("amount", flat=True)) == [Decimal("1.5"), Decimal("3")]


def test_records_missed_by_a_lost_task_are_found_by_the_full_check(account):
    ingest(account, record("r1", at(2), "gpt-4o", 100, 0, "0.1"))
    allocate(account, at(25))
    # Long enough ago that r1's id is settled: ordinary refreshes no longer look at it.
    BillingState.objects.filter(account=account).update(candidate_at=at(1))
    allocate(account, at(25))
    assert BillingState.objects.get(account=account).settled_record_id == UsageRecord.objects.get().pk
    Allocation.objects.all().delete()  # as if its allocation had been lost

    assert refresh_allocations(account, now=at(25)).checkpoint is None
    assert refresh_allocations(account, now=at(25), full=True).checkpoint == at(2)
    assert Allocation.objects.count() == 1


def test_recompute_requests_are_consumed_by_the_refresh(account):
    buy(account, "p", 1000, at(4), at(20))
    assert RecomputeRequest.objects.count() == 1

    result = refresh_allocations(account, now=at(25))

    assert result.checkpoint == at(4)
    assert not RecomputeRequest.objects.exists()


@pytest.fixture
def enqueued(monkeypatch, settings) -> list[tuple]:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "billing"}}
    calls: list[tuple] = []
    monkeypatch.setattr(tasks.refresh_allocations, "apply_async", lambda *a, **kw: calls.append((a, kw)))
    return calls


def test_ingested_records_schedule_one_allocation_task_for_a_burst(
    account, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, record("r1", at(2), "gpt-4o", 100, 0, "0.1"))
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, record("r2", at(2), "gpt-4o", 100, 0, "0.1"))

    assert enqueued == [((), {"args": (account.pk,), "countdown": 10.0})]


def test_a_rolled_back_purchase_schedules_nothing(account, enqueued, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():  # noqa: PT012
        buy(account, "p", 1000, at(4), at(20))
        raise RuntimeError

    assert enqueued == []
    assert not RecomputeRequest.objects.exists()


def test_the_task_waits_while_a_repricing_runs(account, monkeypatch):
    from celery.exceptions import Retry

    monkeypatch.setattr(recompute, "repricing_in_progress", lambda account: True)
    with pytest.raises(Retry):
        tasks.refresh_allocations.apply(args=[account.pk], throw=True)


def test_concurrent_refreshes_take_turns_and_allocate_each_record_once(transactional_db, account):
    buy(account, "p", 10_000, at(1), at(20))
    ingest(account, *(record(f"r{i}", at(2) + timedelta(minutes=i), "gpt-4o", 100, 0, "0.1") for i in range(300)))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            refresh_allocations(account, now=at(25))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Allocation.objects.count() == 300
    assert Allocation.objects.filter(purchase__isnull=False).count() == 100


def test_a_record_re_estimated_after_allocation_is_allocated_again(account):
    from usage.models import RepricingRun

    buy(account, "p", 1000, at(1), at(20))
    ingest(account, record("r1", at(2), "gpt-4o", 600, 0, "0.6"), record("r2", at(3), "gpt-4o", 300, 0, "0.3"))
    allocate(account, at(25))
    # As a re-estimation would: r1 now counts 900 tokens, which pushes r2 partly to the wallet.
    UsageRecord.objects.filter(request_id="r1").update(prompt_tokens=900)
    RepricingRun.objects.create(account=account, total=1, done=1, finished_at=timezone.now())

    refresh_allocations(account, now=at(25))

    rows = Allocation.objects.values_list("record__request_id", "purchase_id", "tokens")
    assert sorted((rid, pid is not None, tokens) for rid, pid, tokens in rows) == [
        ("r1", True, 900),
        ("r2", False, 200),
        ("r2", True, 100),
    ]


def test_the_tokens_reestimated_signal_alone_reallocates_from_the_earliest_change(
    account, django_capture_on_commit_callbacks
):
    from usage.estimation.calibration import tokens_reestimated

    buy(account, "p", 1000, at(1), at(20))
    ingest(account, record("r1", at(2), "gpt-4o", 600, 0, "0.6"), record("r2", at(3), "gpt-4o", 300, 0, "0.3"))
    allocate(account, at(25))
    UsageRecord.objects.filter(request_id="r1").update(prompt_tokens=900)

    with django_capture_on_commit_callbacks():  # the refresh it schedules is run by hand below
        tokens_reestimated.send(sender=UsageRecord, account=account, since=at(2))
    refresh_allocations(account, now=at(25))

    plan_tokens = dict(Allocation.objects.filter(purchase__isnull=False).values_list("record__request_id", "tokens"))
    assert plan_tokens == {"r1": 900, "r2": 100}
