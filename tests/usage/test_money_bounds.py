"""Totals cannot overflow: a record's cost is bounded by one constant, documented in the API
schema, and every column that adds costs up holds any number of accepted records."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing import selectors as billing_selectors
from billing.models import Allocation, WalletEntry
from billing.recompute import refresh_allocations
from toki_dashboard.api import api
from usage import rollups
from usage.models import MONEY, DailyUsage, HourlyUsage, UsageRecord
from usage.schemas import MAX_RECORD_COST, MAX_TOKENS

LARGEST = "99999999999999"  # the largest whole cost a record may report
RECORDS_A_TOTAL_HOLDS = 10**10


def costly(request_id: str, cost: str = LARGEST) -> dict[str, Any]:
    """Records of one group: same hour, model, key and team."""
    return {
        "request_id": request_id,
        "occurred_at": "2026-11-20T10:15:00Z",
        "model": "gpt-4o",
        "api_key": "batch-key",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        "cost": cost,
    }


def test_records_of_the_largest_cost_add_up_in_one_group_batch_after_batch(post_records, account, finance_client):
    answers = [post_records(costly("a"), costly("b")), post_records(costly("c")), post_records(costly("d"))]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["accepted"] for a in answers] == [2, 1, 1]
    expected = 4 * Decimal(LARGEST)
    assert HourlyUsage.objects.get(account=account).cost == expected
    assert DailyUsage.objects.get(account=account).cost == expected
    assert rollups.verify(account) == []
    total = finance_client.get(
        "/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-20", "group_by": "model"}
    )
    assert total.json()["total"]["cost"] == str(expected)


def test_the_wallet_is_charged_a_days_worth_of_the_largest_costs(post_records, account):
    post_records(costly("a"), costly("b"), costly("c"))

    refresh_allocations(account, now=datetime(2026, 11, 21, tzinfo=UTC))

    expected = 3 * Decimal(LARGEST)
    assert sum(a.amount for a in Allocation.objects.filter(account=account)) == expected
    assert WalletEntry.objects.get(account=account, kind="usage_charge").amount == -expected
    assert billing_selectors.wallet_balance(account) == -expected


@pytest.mark.parametrize("cost", [str(MAX_RECORD_COST), "1e14", "0.00000000001", "-1"])
def test_a_cost_outside_the_bounds_is_rejected_with_the_field_named(post_records, cost):
    answer = post_records(costly("x", cost=cost))

    assert answer.status_code == 200
    assert [r["field"] for r in answer.json()["rejected"]] == ["cost"]
    assert UsageRecord.objects.count() == 0


def test_the_api_schema_documents_the_bound_of_a_records_cost():
    cost = api.get_openapi_schema()["components"]["schemas"]["RecordIn"]["properties"]["cost"]

    number = next(branch for branch in cost["anyOf"] if branch.get("type") == "number")
    assert number["exclusiveMaximum"] == float(MAX_RECORD_COST)
    assert number["minimum"] == 0
    assert "10^14" in cost["description"]


def test_every_column_that_adds_costs_up_holds_ten_billion_of_the_largest_records():
    largest_price = Decimal(10) ** (MONEY["max_digits"] - MONEY["decimal_places"])
    largest_computed = largest_price * 2 * MAX_TOKENS / 10**6  # input and output at the highest price
    largest_record = max(MAX_RECORD_COST, largest_computed)
    needed_digits = len(str(int(largest_record * RECORDS_A_TOTAL_HOLDS)))

    for model, name in [
        (UsageRecord, "cost"),
        (HourlyUsage, "cost"),
        (DailyUsage, "cost"),
        (Allocation, "amount"),
        (Allocation, "record_cost"),
        (WalletEntry, "amount"),
    ]:
        field = model._meta.get_field(name)
        assert field.max_digits - field.decimal_places >= needed_digits, f"{model.__name__}.{name}"
