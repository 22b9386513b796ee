"""The forecast on series whose answers are known, then through the database and the balance API."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing.forecast import (
    DayUsage,
    ForecastInputs,
    PlanState,
    account_forecast,
    fit_burn,
    forecast_from_inputs,
)
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from usage.models import Account, TokenScope
from usage.services import create_api_token

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)  # a Friday, noon
TODAY = NOW.date()


def days_before(count: int, model: str, tokens: int, cost: str = "0", *, per_weekday: dict | None = None):
    """`count` complete days before today, `tokens` a day (or per weekday) for one model."""
    rows = []
    for back in range(1, count + 1):
        day = TODAY - timedelta(days=back)
        amount = per_weekday.get(day.weekday(), tokens) if per_weekday else tokens
        rows.append(DayUsage(day=day, model=model, tokens=amount, cost=Decimal(cost) * amount / max(tokens, 1)))
    return rows


def plan(plan_id: int, remaining: int, *, expires_in_days: float, models: tuple[str, ...] = (), **fields) -> PlanState:
    return PlanState(
        id=plan_id,
        tokens=fields.pop("tokens", remaining),
        remaining=remaining,
        effective_at=NOW - timedelta(days=30),
        expires_at=NOW + timedelta(days=expires_in_days),
        models=models,
        **fields,
    )


def forecast(history, plans, wallet: str = "0"):
    return forecast_from_inputs(ForecastInputs(now=NOW, history=history, plans=plans, wallet_balance=Decimal(wallet)))


def test_constant_burn_runs_the_balance_out_after_balance_over_rate_days_with_a_band_of_zero():
    history = days_before(28, "gpt-4o", 1_000)
    result = forecast(history, [plan(1, 10_000, expires_in_days=100)])

    assert result.burn_rate_tokens_per_day == 1_000
    assert result.token_run_out.at == NOW + timedelta(days=10)
    # No day-to-day variation: the band collapses onto the line.
    assert result.token_run_out.earliest == result.token_run_out.at == result.token_run_out.latest
    assert result.plans[1].projected_unused_tokens == 0
    assert result.plans[1].used_up_at == NOW + timedelta(days=10)


def test_no_usage_means_nothing_runs_out_and_every_plan_expires_with_what_it_has():
    result = forecast([], [plan(1, 5_000, expires_in_days=20), plan(2, 700, expires_in_days=3)], wallet="12.00")

    assert result.token_run_out.at is None and result.token_run_out.earliest is None
    assert result.wallet_run_out.at is None
    assert result.burn_rate_tokens_per_day == 0
    assert {p: f.projected_unused_tokens for p, f in result.plans.items()} == {1: 5_000, 2: 700}
    assert not result.has_usage


def test_a_plan_expiring_before_it_is_used_up_leaves_what_the_days_to_expiry_do_not_burn():
    history = days_before(28, "gpt-4o", 1_000)
    result = forecast(history, [plan(1, 10_000, expires_in_days=4)])

    assert result.plans[1].projected_unused_tokens == 10_000 - 4 * 1_000
    assert result.plans[1].used_up_at is None
    # The balance of the plans that cover the model in use ends when the plan expires.
    assert result.token_run_out.at == NOW + timedelta(days=4)


def test_usage_of_models_a_plan_does_not_cover_leaves_the_plan_untouched_and_drains_the_wallet():
    # 2,000 tokens of doubao a day at 0.5 per 1,000 tokens = 1.00 a day from the wallet.
    history = days_before(28, "doubao-pro", 2_000, cost="1.00")
    result = forecast(history, [plan(1, 50_000, expires_in_days=30, models=("gpt-*",))], wallet="5.00")

    assert result.plans[1].projected_unused_tokens == 50_000
    assert result.token_run_out.at is None  # nothing in use burns it
    assert result.burn_rate_tokens_per_day == 0
    assert result.wallet_burn_per_day == Decimal("1.00")
    assert result.wallet_run_out.at == NOW + timedelta(days=5)


def test_higher_priority_plans_burn_first_as_in_the_allocation_engine():
    history = days_before(28, "gpt-4o", 1_000)
    low = plan(1, 10_000, expires_in_days=5)
    high = plan(2, 3_000, expires_in_days=60, priority=10)

    result = forecast(history, [low, high])

    # Days 0-3 burn the priority plan (3,000), then days 3-5 burn 2,000 of the other before it expires.
    assert result.plans[2].projected_unused_tokens == 0
    assert result.plans[1].projected_unused_tokens == 10_000 - 2_000


def test_the_band_widens_with_day_to_day_variation_and_contains_the_central_date():
    steady = days_before(28, "gpt-4o", 1_000)
    bursty = [DayUsage(day=r.day, model=r.model, tokens=r.tokens * (2 if r.day.day % 2 else 0) or 1) for r in steady]
    result = forecast(bursty, [plan(1, 20_000, expires_in_days=200)])

    run_out = result.token_run_out
    assert run_out.earliest < run_out.at < run_out.latest
    assert result.plans[1].unused_low <= result.plans[1].projected_unused_tokens <= result.plans[1].unused_high


def test_a_weekday_pattern_is_learned_once_there_are_three_weeks():
    weekends_quiet = {5: 0, 6: 0}  # Saturday, Sunday
    two_weeks = fit_burn(days_before(14, "gpt-4o", 1_000, per_weekday=weekends_quiet), now=NOW)
    four_weeks = fit_burn(days_before(28, "gpt-4o", 1_000, per_weekday=weekends_quiet), now=NOW)

    assert not two_weeks.weekly
    assert four_weeks.weekly
    assert four_weeks.tokens_per_day(1.5, 5) == 0  # a Saturday
    assert four_weeks.tokens_per_day(3.5, 0) == pytest.approx(1_000, rel=0.01)  # a Monday


def test_recent_days_weigh_more_than_old_ones():
    old_heavy = [
        DayUsage(day=TODAY - timedelta(days=b), model="m", tokens=4_000 if b > 7 else 1_000) for b in range(1, 9)
    ]
    burn = fit_burn(old_heavy, now=NOW)

    assert 1_000 < burn.tokens_per_day(0, NOW.weekday()) < (7 * 1_000 + 4_000) / 8


def test_a_growing_series_projects_above_its_recent_mean():
    growing = [DayUsage(day=TODAY - timedelta(days=b), model="m", tokens=10_000 - 200 * b) for b in range(1, 29)]
    burn = fit_burn(growing, now=NOW)

    assert burn.tokens_per_day(0, 0) == pytest.approx(10_000, rel=0.02)
    assert burn.tokens_per_day(7, 0) > burn.tokens_per_day(0, 0)


def test_the_days_before_the_first_use_do_not_count_as_zero():
    history = days_before(3, "gpt-4o", 1_000)
    result = forecast(history, [plan(1, 10_000, expires_in_days=100)])

    assert result.burn_rate_tokens_per_day == 1_000


# --- Through the database -------------------------------------------------------------------


def consumption(
    account: Account,
    days: int,
    tokens_per_day: int,
    model: str = "gpt-4o",
    cost: str = "0.10",
    *,
    now: datetime = NOW,
    wobble: int = 0,
) -> None:
    """One record at 06:00 UTC on each of the `days` days before `now`'s; `wobble` alternates them up and down."""
    ingest(
        account,
        *[
            record(
                f"r-{model}-{back}",
                datetime.combine((now - timedelta(days=back)).date(), time(6), tzinfo=UTC),
                model,
                (tokens_per_day + (wobble if back % 2 else -wobble)) // 2,
                (tokens_per_day + (wobble if back % 2 else -wobble)) // 2,
                cost,
            )
            for back in range(1, days + 1)
        ],
    )


def test_wallet_run_out_through_the_database_is_balance_over_daily_charges(account: Account):
    top_up(account, "t1", "50.00", NOW - timedelta(days=40))
    consumption(account, 14, 4_000, model="doubao-pro", cost="1.00")  # no plan: 1.00 a day from the wallet
    allocate(account, NOW)

    result = account_forecast(account, now=NOW)

    assert result.wallet_balance == Decimal("36.00")
    assert result.wallet_burn_per_day == Decimal("1.00")
    assert result.wallet_run_out.at == NOW + timedelta(days=36)
    assert result.token_run_out.at is None


def test_the_wallet_burn_rate_keeps_its_cents(account: Account):
    top_up(account, "t1", "50.00", NOW - timedelta(days=40))
    consumption(account, 14, 4_000, model="doubao-pro", cost="0.40")  # less than one unit a day
    allocate(account, NOW)

    assert account_forecast(account, now=NOW).wallet_burn_per_day == Decimal("0.40")


def test_token_run_out_through_the_database_is_balance_over_rate(account: Account):
    buy(account, "pro", 200_000, NOW - timedelta(days=40), NOW + timedelta(days=90), models=["gpt-*"])
    consumption(account, 14, 4_000)
    allocate(account, NOW)

    result = account_forecast(account, now=NOW)

    left = 200_000 - 14 * 4_000
    assert result.token_balance == left
    assert result.burn_rate_tokens_per_day == 4_000
    assert result.token_run_out.at == NOW + timedelta(days=left / 4_000)


def test_the_balance_api_carries_the_forecast_fields(account: Account):
    now = timezone.now()
    purchase = buy(account, "pro", 200_000, now - timedelta(days=40), now + timedelta(days=90), models=["gpt-*"])
    consumption(account, 14, 4_000, now=now, wobble=1_000)
    allocate(account, now)
    token = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])[1]

    body = Client().get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {token}").json()

    assert Decimal(body["burn_rate_tokens_per_day"]) > 0
    assert body["projected_runout_at"] is not None
    earliest, central, latest = (
        datetime.fromisoformat(body[f])
        for f in ("projected_runout_earliest", "projected_runout_at", "projected_runout_latest")
    )
    assert earliest < central < latest
    (plan_row,) = [p for p in body["plans"] if p["id"] == purchase]
    assert isinstance(plan_row["projected_unused_at_expiry"], int)


def test_a_day_without_usage_between_used_days_counts_as_zero():
    history = [DayUsage(day=TODAY - timedelta(days=b), model="m", tokens=2_000) for b in (1, 3, 5, 7, 9, 11, 13)]
    burn = fit_burn(history, now=NOW)

    assert burn.tokens_per_day(0, 4) < 1_500  # every other day at 2,000: the empty days pull it down
    assert burn.cv > 0.5


def test_only_complete_days_are_read(account: Account):
    consumption(account, 3, 4_000)
    ingest(account, record("today", NOW - timedelta(hours=1), "gpt-4o", 500_000, 0, "1"))

    result = account_forecast(account, now=NOW)

    assert result.token_demand_per_day == 4_000


# --- Trend, level and band on noisy series ----------------------------------------------------


def noisy_days(count: int, tokens: float, *, seed: int, noise: float = 0.2, growth: float = 0.0) -> list[DayUsage]:
    """`count` complete days before today around `tokens` a day (lognormal noise, optional daily growth)."""
    rng = random.Random(seed)
    return [
        DayUsage(
            day=TODAY - timedelta(days=back),
            model="m",
            tokens=round(tokens * (1 + growth) ** (count - back) * rng.lognormvariate(0, noise)),
        )
        for back in range(1, count + 1)
    ]


def test_a_trend_that_does_not_stand_out_from_the_noise_is_not_extrapolated():
    for seed in range(5):
        burn = fit_burn(noisy_days(56, 10_000, seed=seed, noise=0.3), now=NOW)

        # Flat traffic: whatever slope the noise suggests, two weeks out stays near today's level.
        assert burn.tokens_per_day(14, 0) == pytest.approx(burn.tokens_per_day(0, 0), rel=0.08)


def test_a_clear_trend_in_noisy_data_is_still_followed():
    burn = fit_burn(noisy_days(56, 10_000, seed=1, noise=0.1, growth=0.02), now=NOW)

    assert burn.tokens_per_day(14, 0) > 1.15 * burn.tokens_per_day(0, 0)


def test_the_band_far_ahead_includes_the_uncertainty_of_the_trend():
    burn = fit_burn(noisy_days(56, 10_000, seed=2, noise=0.2, growth=0.01), now=NOW)

    assert burn.slope_var > 0
    assert burn.band(60) > replace(burn, slope_var=0.0).band(60)


def test_the_band_holds_the_true_run_out_about_four_times_in_five():
    # A mini backtest: on noisy traffic, balances that truly run out after 7 days.
    series = sorted(noisy_days(120, 10_000, seed=11, noise=0.35), key=lambda r: r.day)
    inside = []
    for origin in range(56, 112):
        now = datetime.combine(series[origin].day, time(0), tzinfo=UTC)
        balance = sum(r.tokens for r in series[origin : origin + 7])
        truth = now + timedelta(days=7)
        history = [DayUsage(day=r.day, model="m", tokens=r.tokens) for r in series[:origin]]
        balance_plan = PlanState(
            id=1,
            tokens=balance,
            remaining=balance,
            effective_at=now - timedelta(days=200),
            expires_at=now + timedelta(days=70),
        )
        result = forecast_from_inputs(
            ForecastInputs(now=now, history=history, plans=[balance_plan], wallet_balance=Decimal(0), horizon_days=60)
        )
        run_out = result.token_run_out
        inside.append(run_out.earliest <= truth <= run_out.latest)

    assert 0.65 <= sum(inside) / len(inside) <= 0.95
