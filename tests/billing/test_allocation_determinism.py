"""Whatever order and batches records (and purchases) arrive in, late ones included, the
stored allocations, expiries, wallet and paid rollup equal one pass of the engine over everything."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import paid, selectors
from billing.allocation import Grant, Usage, allocate
from billing.audit import Actor
from billing.models import Allocation, DailyPaid, PlanExpiry, PlanPurchase, WalletEntry, WalletEntryKind
from billing.recompute import refresh_allocations
from billing.services import void_purchase
from tests.billing.conftest import T0, buy, ingest, record, top_up
from usage.models import UsageRecord
from usage.services import create_account

NOW = T0 + timedelta(days=45)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "doubao-pro")
accounts = itertools.count()


@st.composite
def purchase_specs(draw: st.DrawFn) -> list[dict]:
    specs = []
    for i in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, 15))
        specs.append(
            {
                "key": f"p{i}",
                "tokens": draw(st.integers(100, 4000)),
                "start": T0 + timedelta(days=start),
                "end": T0 + timedelta(days=start + draw(st.integers(1, 25))),
                "models": draw(
                    st.lists(st.sampled_from(("gpt-*", "claude-sonnet-4", "gpt-4o")), max_size=2, unique=True)
                ),
                "priority": draw(st.integers(0, 2)),
            }
        )
    return specs


@st.composite
def record_specs(draw: st.DrawFn) -> list[dict]:
    count = draw(st.integers(1, 30))
    return [
        record(
            f"req-{i:03d}",
            T0 + timedelta(minutes=draw(st.integers(0, 40 * 24 * 60))),
            draw(st.sampled_from(MODELS)),
            draw(st.integers(0, 900)),
            draw(st.integers(0, 300)),
            draw(st.one_of(st.none(), st.decimals(0, 3, places=4).map(str))),
        )
        for i in range(count)
    ]


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[dict], list[list[dict]], list[int], int | None]:
    """Purchases, record batches in arrival order, the batch each purchase arrives
    before, and which purchase is voided after the last batch (if any)."""
    purchases = draw(purchase_specs())
    records = draw(record_specs())
    order = draw(st.permutations(records))
    cuts = sorted(draw(st.lists(st.integers(1, max(len(order) - 1, 1)), max_size=5, unique=True)))
    batches = [order[a:b] for a, b in itertools.pairwise([0, *cuts, len(order)]) if order[a:b]]
    purchase_arrival = [draw(st.integers(0, len(batches))) for _ in purchases]
    voided = draw(st.one_of(st.none(), st.integers(0, len(purchases) - 1)))
    return purchases, batches, purchase_arrival, voided


def expected(account, purchases: list[dict], voided: int | None):
    ids = dict(PlanPurchase.objects.filter(account=account).values_list("idempotency_key", "pk"))
    grants = [
        Grant(ids[p["key"]], p["tokens"], p["start"], p["end"], tuple(p["models"]), p["priority"])
        for n, p in enumerate(purchases)
        if n != voided
    ]
    records = [
        Usage(r.pk, r.request_id, r.occurred_at, r.model, r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cost)
        for r in UsageRecord.objects.filter(account=account)
    ]
    return allocate(grants, records, now=NOW)


def stored(account) -> tuple[list, list]:
    rows = sorted(
        Allocation.objects.filter(account=account).values_list("record_id", "purchase_id", "tokens", "amount"),
        key=lambda r: (r[0], r[1] is None, r[1] or 0),
    )
    expiries = sorted(PlanExpiry.objects.filter(account=account).values_list("purchase_id", "tokens", "expired_at"))
    return rows, expiries


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(plan=arrivals(), seed=st.integers(0, 2**16))
def test_arrival_order_batching_and_late_records_do_not_change_any_balance(db, plan, seed):
    purchases, batches, purchase_arrival, voided = plan
    account = create_account(name=f"determinism-{next(accounts)}")
    top_up(account, "opening", "100", T0)

    for index, batch in enumerate([*batches, []]):
        for n, spec in enumerate(purchases):
            if purchase_arrival[n] == index:
                buy(account, spec["key"], spec["tokens"], spec["start"], spec["end"],
                    models=spec["models"], priority=spec["priority"])  # fmt: skip
        if batch:
            ingest(account, *batch)
        # Sometimes several batches arrive before the allocation runs.
        if random.Random(seed + index).random() < 0.7 or index == len(batches):
            refresh_allocations(account, now=NOW)
    if voided is not None:
        void_purchase(PlanPurchase.objects.get(account=account, idempotency_key=purchases[voided]["key"]),
                      Actor.system("tests"), "test void")  # fmt: skip
        refresh_allocations(account, now=NOW)

    one_pass = expected(account, purchases, voided)
    rows, expiries = stored(account)
    assert rows == sorted(
        [(s.record_id, s.purchase_id, s.tokens, s.amount) for s in one_pass.shares],
        key=lambda r: (r[0], r[1] is None, r[1] or 0),
    )
    assert expiries == sorted((e.purchase_id, e.tokens, e.expired_at) for e in one_pass.expired)

    wallet_usage = sum((s.amount for s in one_pass.shares if s.purchase_id is None and s.amount), Decimal(0))
    assert selectors.wallet_balance(account) == Decimal(100) - wallet_usage
    per_day: dict = defaultdict(Decimal)
    for share in one_pass.shares:
        if share.purchase_id is None and share.amount:
            per_day[share.occurred_at.date()] -= share.amount
    posted: dict = defaultdict(Decimal)
    for day, amount in WalletEntry.objects.filter(account=account, kind=WalletEntryKind.USAGE_CHARGE).values_list(
        "usage_day", "amount"
    ):
        posted[day] += amount
    assert {d: a for d, a in posted.items() if a} == {d: a for d, a in per_day.items() if a}

    assert paid_per_day_and_model(account) == expected_paid(account, one_pass.shares)
    before = paid_rows(account)
    paid.rebuild(account)
    assert paid_rows(account) == before


def paid_rows(account) -> list[tuple]:
    fields = ("day", "model", "api_key_id", "team", "currency", *DailyPaid.FIGURES)
    return sorted(DailyPaid.objects.filter(account=account).values_list(*fields))


def paid_per_day_and_model(account) -> dict:
    found: dict = defaultdict(Decimal)
    for day, model, plan_paid, wallet_paid in DailyPaid.objects.filter(account=account).values_list(
        "day", "model", "plan_paid", "wallet_paid"
    ):
        found[(day, model)] += plan_paid + wallet_paid
    return {key: amount for key, amount in found.items() if amount}


def expected_paid(account, shares) -> dict:
    """Plan tokens at price ÷ tokens granted, each row rounded to the money quantum, plus wallet charges."""
    purchases = {p.pk: p for p in PlanPurchase.objects.filter(account=account)}
    models = dict(UsageRecord.objects.filter(account=account).values_list("pk", "model"))
    found: dict = defaultdict(Decimal)
    for share in shares:
        key = (share.occurred_at.date(), models[share.record_id])
        if share.purchase_id is not None:
            purchase = purchases[share.purchase_id]
            exact = purchase.price * share.tokens / purchase.tokens
            found[key] += exact.quantize(Decimal("1e-10"), rounding=ROUND_HALF_EVEN)
        elif share.amount:
            found[key] += share.amount
    return {key: amount for key, amount in found.items() if amount}
