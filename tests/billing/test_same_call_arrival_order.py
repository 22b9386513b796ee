"""Whatever order two sources bring the same calls in, every total and balance is that of
each call counted once."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import selectors
from billing.recompute import refresh_allocations
from tests.billing.conftest import T0, buy, top_up
from usage import rollups
from usage.models import ModelPrice, PriceSource, UsageRecord
from usage.schemas import validate_records
from usage.services import create_account, record_usage

NOW = T0 + timedelta(days=40)
accounts = itertools.count()


@st.composite
def calls(draw: st.DrawFn) -> list[dict]:
    """Calls with the provider's request id, and which sources carry each: proxy, sync or both."""
    found = []
    for i in range(draw(st.integers(1, 16))):
        found.append(
            {
                "rid": f"2026030{i % 9}{i:06d}ab",
                "occurred_at": (T0 + timedelta(minutes=draw(st.integers(0, 30 * 24 * 60)))).isoformat(),
                "model": draw(st.sampled_from(("gpt-4o", "deepseek-chat"))),
                "usage": {"prompt_tokens": draw(st.integers(0, 4000)), "completion_tokens": draw(st.integers(0, 800))},
                "carried_by": draw(st.sampled_from((("proxy",), ("sync",), ("proxy", "sync")))),
            }
        )
    return found


def as_record(call: dict, source: str) -> dict:
    request_id = f"proxy-{call['rid']}" if source == "proxy" else call["rid"]
    record = {k: call[k] for k in ("occurred_at", "model", "usage")}
    return record | {"request_id": request_id, "upstream_request_id": call["rid"]}


def _account(name: str):
    for model, price in (("gpt-4o", "2.5"), ("deepseek-chat", "0.27")):
        ModelPrice.objects.get_or_create(
            model_pattern=model, account=None, currency="USD", source=PriceSource.MANUAL,
            defaults={"input_per_mtok": Decimal(price), "output_per_mtok": Decimal(price) * 4, "effective_from": T0},
        )  # fmt: skip
    account = create_account(name=name)
    buy(account, f"{name}-plan", 20_000, T0, T0 + timedelta(days=60), models=["gpt-*"])
    top_up(account, f"{name}-wallet", "20", T0)
    return account


def _figures(account) -> tuple:
    refresh_allocations(account, now=NOW)
    assert rollups.verify(account) == []
    stored = rollups.stored(account).values()
    totals = tuple(sum(group[name] for group in stored) for name in ("requests", "prompt_tokens", "completion_tokens"))
    cost = sum((Decimal(group["cost"]) for group in stored), Decimal(0))
    statuses = selectors.plan_statuses(account, now=NOW)
    return totals, cost, selectors.token_balance(statuses, now=NOW), selectors.wallet_balance(account)


def _send(account, records: list[tuple[str, dict]]) -> None:
    for source, group in itertools.groupby(records, key=lambda pair: pair[0]):
        valid, rejected = validate_records([record for _, record in group])
        assert not rejected, rejected
        record_usage(account, valid, source=source)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(made=calls(), data=st.data())
def test_the_arrival_order_of_two_sources_never_changes_totals_or_balances(db, made, data):
    once = _account(f"once-{next(accounts)}")
    _send(once, [("api", as_record(call, "api") | {"request_id": call["rid"]}) for call in made])
    both = _account(f"both-{next(accounts)}")
    arrivals = [(source, as_record(call, source)) for call in made for source in call["carried_by"]]
    order = data.draw(st.permutations(arrivals))
    cuts = sorted(data.draw(st.lists(st.integers(1, max(len(order) - 1, 1)), max_size=4, unique=True)))
    for start, end in itertools.pairwise([0, *cuts, len(order)]):
        _send(both, order[start:end])
        if data.draw(st.booleans()):
            refresh_allocations(both, now=NOW)  # allocations sometimes run between arrivals

    assert UsageRecord.objects.filter(account=both).count() == len(made)
    assert _figures(both) == _figures(once)
