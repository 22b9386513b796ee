"""Failed calls never move a balance: not through the sync, not in any mix of records."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import selectors
from billing.recompute import refresh_allocations
from billing.sync import sync_account
from tests.billing.conftest import T0, buy, ingest, top_up
from tests.billing.fake_console import LogRow
from usage.models import ModelPrice, PriceSource, UsageRecord
from usage.services import create_account

NOW = T0 + timedelta(days=40)
accounts = itertools.count()


def test_a_synced_error_row_on_an_unpriced_model_costs_zero_and_is_not_unpriced(newapi_account, console):
    created = int(timezone.now().timestamp()) - 600
    console.add_logs(
        LogRow(created_at=created, type=5, model_name="no-price-model", prompt_tokens=0, completion_tokens=0,
               quota=0, content="upstream error", other={"status_code": 502, "error_type": "upstream_error"}),
    )  # fmt: skip

    sync_account(newapi_account)

    (record,) = UsageRecord.objects.filter(account=newapi_account)
    assert (record.status_code, record.tokens_source, record.prompt_tokens, record.cost) == (502, "none", 0, 0)


FAILURES = [
    (401, {"type": "invalid_request_error", "code": "invalid_api_key"}),
    (429, {"type": "rate_limit_error"}),
    (499, {"type": "client_cancelled"}),
    (502, {"type": "upstream_error", "code": "upstream_unreachable"}),
    (504, {"type": "timeout"}),
]


@st.composite
def usage_mix(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """Served calls (reported or estimated) and failed calls without usage, with lengths."""
    served, failed = [], []
    for i in range(draw(st.integers(1, 12))):
        body = {
            "request_id": f"ok-{i}",
            "occurred_at": (T0 + timedelta(minutes=draw(st.integers(0, 30 * 24 * 60)))).isoformat(),
            "model": draw(st.sampled_from(("gpt-4o", "deepseek-chat"))),
        }
        if draw(st.booleans()):
            prompt, completion = draw(st.integers(0, 5000)), draw(st.integers(0, 900))
            body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion}
        else:
            body |= {"context_bytes": draw(st.integers(1, 40_000)), "output_bytes": draw(st.integers(0, 4000))}
        served.append(body)
    for i in range(draw(st.integers(1, 12))):
        status, error = draw(st.sampled_from(FAILURES))
        failed.append(
            {
                "request_id": f"failed-{i}",
                "occurred_at": (T0 + timedelta(minutes=draw(st.integers(0, 30 * 24 * 60)))).isoformat(),
                "model": draw(st.sampled_from(("gpt-4o", "deepseek-chat", "unpriced-model"))),
                "status_code": status,
                "error": error,
                "context_bytes": draw(st.integers(1, 10_000_000)),
                "output_bytes": draw(st.integers(0, 4000)),
            }
        )
    return served, failed


def _balances(account) -> tuple[int, Decimal]:
    refresh_allocations(account, now=NOW)
    statuses = selectors.plan_statuses(account, now=NOW)
    return selectors.token_balance(statuses, now=NOW), selectors.wallet_balance(account)


def _priced() -> None:
    for model, price in (("gpt-4o", "2.5"), ("deepseek-chat", "0.27")):
        ModelPrice.objects.get_or_create(
            model_pattern=model, account=None, currency="USD", source=PriceSource.MANUAL,
            defaults={"input_per_mtok": Decimal(price), "output_per_mtok": Decimal(price) * 4, "effective_from": T0},
        )  # fmt: skip


def _account_with_plan_and_wallet(name: str):
    account = create_account(name=name)
    buy(account, f"{name}-plan", 60_000, T0, T0 + timedelta(days=60), models=["gpt-*"])
    top_up(account, f"{name}-wallet", "50", T0)
    return account


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mix=usage_mix(), data=st.data())
def test_failed_calls_never_move_the_token_balance_or_the_wallet_whatever_the_mix(db, mix, data):
    _priced()
    served, failed = mix
    without = _account_with_plan_and_wallet(f"served-only-{next(accounts)}")
    ingest(without, *served)
    with_failures = _account_with_plan_and_wallet(f"with-failures-{next(accounts)}")
    arrival = data.draw(st.permutations(served + failed))
    for start in range(0, len(arrival), 5):
        ingest(with_failures, *arrival[start : start + 5])

    assert _balances(with_failures) == _balances(without)
