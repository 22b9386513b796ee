"""The allocation engine as a pure function: burn order, coverage, spill-over, expiry, and
that resuming from any checkpoint equals one pass over everything."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.allocation import Grant, Share, Usage, allocate
from billing.models import TokenBasis

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=60)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def usage(rid: str, when: float, model: str = "gpt-4o", prompt: int = 100, completion: int = 0, **kw) -> Usage:
    return Usage(
        id=int(rid.strip("r")), request_id=rid, occurred_at=day(when), model=model, prompt_tokens=prompt,
        completion_tokens=completion, **kw,
    )  # fmt: skip


def rows(shares: list[Share]) -> list[tuple[int, int | None, int, Decimal | None]]:
    return [(s.record_id, s.purchase_id, s.tokens, s.amount) for s in shares]


def test_the_highest_priority_plan_burns_first():
    low = Grant(1, 1000, day(0), day(30), priority=0)
    high = Grant(2, 1000, day(0), day(30), priority=5)

    outcome = allocate([low, high], [usage("r1", 1, prompt=300)], now=NOW)

    assert rows(outcome.shares) == [(1, 2, 300, None)]


def test_equal_priorities_burn_the_soonest_expiry_then_the_earliest_purchase():
    later_expiry = Grant(1, 1000, day(0), day(40))
    sooner_expiry = Grant(2, 1000, day(1), day(30))
    same_expiry_bought_later = Grant(3, 1000, day(0.5), day(30))

    outcome = allocate([later_expiry, sooner_expiry, same_expiry_bought_later], [usage("r1", 2)], now=NOW)

    assert rows(outcome.shares) == [(1, 3, 100, None)]


def test_a_plan_covers_only_its_models_and_globs_and_the_rest_goes_to_the_wallet_at_cost():
    gpt_only = Grant(1, 10_000, day(0), day(30), models=("gpt-4o*",))
    records = [
        usage("r1", 1, "gpt-4o-mini", cost=Decimal("0.01")),
        usage("r2", 1, "claude-sonnet-4", cost=Decimal("0.25")),
    ]

    outcome = allocate([gpt_only], records, now=NOW)

    assert rows(outcome.shares) == [(1, 1, 100, None), (2, None, 100, Decimal("0.25"))]


def test_a_record_larger_than_what_is_left_spills_to_the_next_plan_then_the_wallet_pro_rata():
    first = Grant(1, 300, day(0), day(10))
    second = Grant(2, 200, day(0), day(20))
    record = usage("r1", 1, prompt=800, completion=200, cost=Decimal("1.00"))

    outcome = allocate([first, second], [record], now=NOW)

    assert rows(outcome.shares) == [(1, 1, 300, None), (1, 2, 200, None), (1, None, 500, Decimal("0.5000000000"))]
    assert outcome.used == {1: 300, 2: 200}


def test_a_plan_covers_from_its_effective_time_until_just_before_its_expiry():
    grant = Grant(1, 10_000, day(1), day(2))
    records = [usage("r1", 0.999), usage("r2", 1), usage("r3", 1.999), usage("r4", 2)]

    outcome = allocate([grant], records, now=NOW)

    assert [s.purchase_id for s in outcome.shares] == [None, 1, 1, None]


def test_unused_tokens_are_expired_and_a_used_up_plan_expires_with_zero():
    left_over = Grant(1, 1000, day(0), day(5))
    used_up = Grant(2, 100, day(0), day(5), priority=1)
    still_running = Grant(3, 100, day(0), day(90))

    outcome = allocate([left_over, used_up, still_running], [usage("r1", 1, prompt=150)], now=NOW)

    assert {(e.purchase_id, e.tokens, e.expired_at) for e in outcome.expired} == {(1, 950, day(5)), (2, 0, day(5))}


def test_a_plan_may_count_uncached_or_completion_tokens_only():
    uncached = Grant(1, 10_000, day(0), day(30), basis=TokenBasis.UNCACHED, models=("gpt-4o",))
    completion = Grant(2, 10_000, day(0), day(30), basis=TokenBasis.COMPLETION, models=("o3",))
    records = [
        Usage(1, "r1", day(1), "gpt-4o", prompt_tokens=1000, completion_tokens=50, cached_tokens=800),
        Usage(2, "r2", day(1), "o3", prompt_tokens=1000, completion_tokens=70),
    ]

    outcome = allocate([uncached, completion], records, now=NOW)

    assert rows(outcome.shares) == [(1, 1, 250, None), (2, 2, 70, None)]


def test_an_unpriced_record_no_plan_covers_gets_a_wallet_row_without_amount():
    outcome = allocate([], [usage("r1", 1, cost=None)], now=NOW)

    assert rows(outcome.shares) == [(1, None, 100, None)]


def test_a_record_without_tokens_still_gets_a_row_so_it_counts_as_allocated():
    grant = Grant(1, 10_000, day(0), day(30))

    outcome = allocate([grant], [usage("r1", 1, prompt=0, cost=Decimal("0"))], now=NOW)

    assert rows(outcome.shares) == [(1, None, 0, Decimal("0"))]


# --- Properties ---------------------------------------------------------------------------

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "qwen-max")


@st.composite
def grants(draw: st.DrawFn) -> list[Grant]:
    count = draw(st.integers(0, 5))
    result = []
    for i in range(1, count + 1):
        start = draw(st.integers(0, 20))
        length = draw(st.integers(1, 20))
        result.append(
            Grant(
                id=i,
                tokens=draw(st.integers(1, 5000)),
                effective_at=day(start),
                expires_at=day(start + length),
                models=tuple(draw(st.lists(st.sampled_from((*MODELS, "gpt-*")), max_size=2, unique=True))),
                priority=draw(st.integers(0, 2)),
                basis=draw(st.sampled_from(TokenBasis.values)),
            )
        )
    return result


@st.composite
def records(draw: st.DrawFn) -> list[Usage]:
    count = draw(st.integers(0, 40))
    result = []
    for i in range(1, count + 1):
        prompt = draw(st.integers(0, 2000))
        result.append(
            Usage(
                id=i,
                request_id=f"r{draw(st.integers(0, 10**6)):07d}-{i}",
                occurred_at=day(draw(st.integers(0, 40 * 24)) / 24),
                model=draw(st.sampled_from(MODELS)),
                prompt_tokens=prompt,
                completion_tokens=draw(st.integers(0, 500)),
                cached_tokens=draw(st.integers(0, prompt)),
                cost=draw(st.one_of(st.none(), st.decimals(0, 5, places=6))),
            )
        )
    return result


@settings(max_examples=200, deadline=None)
@given(grants(), records(), st.randoms(use_true_random=False))
def test_the_order_records_are_given_in_changes_nothing(grants, records, rng: random.Random):
    shuffled = list(records)
    rng.shuffle(shuffled)

    assert allocate(grants, shuffled, now=NOW) == allocate(grants, records, now=NOW)


@settings(max_examples=200, deadline=None)
@given(grants(), records(), st.integers(0, 40 * 24))
def test_resuming_from_any_checkpoint_gives_the_one_pass_result(grants, records, checkpoint_hour):
    checkpoint = day(checkpoint_hour / 24)
    one_pass = allocate(grants, records, now=NOW)

    before = allocate(grants, [r for r in records if r.occurred_at < checkpoint], now=NOW)
    used_before = {
        g.id: sum(s.tokens for s in before.shares if s.purchase_id == g.id)
        for g in grants
        if g.expires_at >= checkpoint
    }
    after = allocate(
        [g for g in grants if g.expires_at >= checkpoint],
        [r for r in records if r.occurred_at >= checkpoint],
        now=NOW,
        used_before=used_before,
        since=checkpoint,
    )

    assert before.shares + after.shares == one_pass.shares
    expired_early = [e for e in one_pass.expired if e.expired_at < checkpoint]
    assert sorted(expired_early + after.expired, key=lambda e: e.purchase_id) == sorted(
        one_pass.expired, key=lambda e: e.purchase_id
    )


@settings(max_examples=200, deadline=None)
@given(grants(), records())
def test_plans_never_give_more_than_they_hold_and_the_wallet_pays_only_what_no_plan_could(grants, records):
    outcome = allocate(grants, records, now=NOW)
    by_record: dict[int, list[Share]] = {}
    for share in outcome.shares:
        by_record.setdefault(share.record_id, []).append(share)

    for grant in grants:
        assert sum(s.tokens for s in outcome.shares if s.purchase_id == grant.id) <= grant.tokens
    used: dict[int, int] = dict.fromkeys((g.id for g in grants), 0)
    for record in sorted(records, key=lambda r: r.order):
        shares = by_record[record.id]
        assert shares, "every record has at least one row"
        wallet = [s for s in shares if s.purchase_id is None]
        if wallet:
            # Nothing was left, at that moment, in any plan that covers the record.
            for grant in grants:
                covers = not grant.models or any(fnmatchcase(record.model, m) for m in grant.models)
                if covers and grant.is_effective(record.occurred_at) and record.tokens_for(grant.basis) > 0:
                    given = sum(s.tokens for s in shares if s.purchase_id == grant.id)
                    assert used[grant.id] + given == grant.tokens
            if record.cost is not None:
                assert Decimal(0) <= wallet[0].amount <= record.cost
        else:
            assert sum(s.tokens for s in shares if s.purchase_id) > 0 or record.total_tokens == 0
        for share in shares:
            if share.purchase_id is not None:
                used[share.purchase_id] += share.tokens
