"""Stored failed calls that were billed (before failed calls cost nothing) are corrected:
records, both rollups, allocations and the wallet, with a report of what changed."""

from __future__ import annotations

import importlib
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing import selectors
from billing.models import RecomputeRequest
from billing.recompute import refresh_allocations
from tests.billing.conftest import T0, buy, ingest, record, top_up
from usage import rollups
from usage.models import ModelPrice, PriceSource, UsageRecord

NOW = T0 + timedelta(days=20)


@pytest.fixture
def billed_failures(account):
    """What the landed code stored: failed calls with estimated tokens and a cost (and one on an
    unpriced model read as unpriced), allocated to a plan and charged to the wallet."""
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=Decimal("2.5"), output_per_mtok=Decimal("10"), currency="USD",
        effective_from=T0, source=PriceSource.MANUAL,
    )  # fmt: skip
    buy(account, "plan", 3_000, T0, T0 + timedelta(days=30), models=["gpt-4o"])
    top_up(account, "opening", "100", T0)
    served = record("served", T0 + timedelta(hours=1), "gpt-4o", 1000, 200, None)
    looked_served = [
        {"request_id": f"failed-{i}", "occurred_at": (T0 + timedelta(hours=2 + i)).isoformat(), "model": "gpt-4o",
         "context_bytes": 400_000, "message_count": 2}
        for i in range(3)
    ]  # fmt: skip
    unpriced = {"request_id": "failed-unpriced", "occurred_at": (T0 + timedelta(hours=9)).isoformat(),
                "model": "mystery-model"}  # fmt: skip
    ingest(account, served, *looked_served, unpriced)
    # As the landed code classified them: the calls had failed.
    UsageRecord.objects.filter(request_id__startswith="failed-").update(
        status_code=502, error_cause="upstream_error", error_code="upstream_unreachable"
    )
    rollups.rebuild(account)
    refresh_allocations(account, now=NOW)
    estimated = UsageRecord.objects.filter(request_id__startswith="failed-", tokens_source="estimated")
    assert estimated.count() == 3 and selectors.wallet_balance(account) < Decimal("100")
    return account


def test_the_command_zeroes_billed_failures_moves_the_rollups_and_says_what_it_changed(billed_failures):
    account = billed_failures
    failed = UsageRecord.objects.filter(request_id__startswith="failed-")
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in failed)
    value = sum(r.cost or 0 for r in failed)
    out = io.StringIO()

    call_command("correct_failed_calls", stdout=out)

    assert out.getvalue().strip() == (
        f"acme: 4 failed calls no longer billed: {tokens:,} tokens and {value:,.2f} USD of usage value removed, "
        "1 no longer unpriced, from 2026-03-01 02:00 UTC"
    )
    corrected = failed.all()  # a fresh read, not the rows summed above
    assert {(r.prompt_tokens, r.completion_tokens, r.tokens_source, r.cost) for r in corrected} == {(0, 0, "none", 0)}
    assert set(failed.values_list("context_bytes", flat=True)) == {None, 400_000}  # the lengths stay
    assert rollups.verify(account) == []
    out = io.StringIO()
    call_command("correct_failed_calls", stdout=out)
    assert out.getvalue().strip() == "No failed call is billed: nothing to correct."


def test_after_the_correction_the_balances_are_those_of_the_served_calls_alone(billed_failures, account):
    call_command("correct_failed_calls", stdout=io.StringIO())
    refresh_allocations(account, now=NOW)

    statuses = selectors.plan_statuses(account, now=NOW)
    served = UsageRecord.objects.get(request_id="served")
    assert selectors.token_balance(statuses, now=NOW) == 3_000 - served.total_tokens
    assert selectors.wallet_balance(account) == Decimal("100")


def _migration(app: str, name: str):
    return importlib.import_module(f"{app}.migrations.{name}")


def test_the_data_migrations_correct_the_records_and_ask_billing_to_recompute(billed_failures, account, capsys):
    executor = MigrationExecutor(connection)
    usage_state = executor.loader.project_state(("usage", "0011_failed_calls_are_not_billed")).apps
    billing_state = executor.loader.project_state(("billing", "0003_reallocate_failed_calls")).apps

    _migration("usage", "0011_failed_calls_are_not_billed").correct(usage_state, None)
    _migration("billing", "0003_reallocate_failed_calls").request_recomputes(billing_state, None)

    printed = capsys.readouterr().out
    assert "acme: 4 failed calls no longer billed" in printed
    assert "acme: allocations and wallet charges recomputed from 2026-03-01 02:00 UTC" in printed
    assert rollups.verify(account) == []
    assert RecomputeRequest.objects.filter(account=account).count() == 1
    refresh_allocations(account, now=NOW)
    assert selectors.wallet_balance(account) == Decimal("100")
