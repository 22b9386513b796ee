"""Putting it together: an account's forecast from its inputs, and the inputs read from the
database (rollups, plans in effect, the wallet)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from billing import selectors
from billing.forecast.burn import fit_burn
from billing.forecast.model import (
    DAY,
    HORIZON_DAYS,
    LOOKBACK_DAYS,
    AccountForecast,
    BurnModel,
    DayUsage,
    ForecastInputs,
    PlanForecast,
    PlanState,
    ProjectedPoint,
    RunOut,
)
from billing.forecast.simulation import Simulation, simulate
from usage import selectors as usage_selectors
from usage.models import Account
from usage.periods import Period, dashboard_tz


def _per_day(pairs: list[tuple[float, float]], places: int = 0) -> Decimal:
    """The mean per day, to `places` decimals (tokens: whole; money: cents)."""
    days = sum(length for length, _ in pairs)
    if days <= 0:
        return Decimal(0)
    return Decimal(str(round(sum(v for _, v in pairs) / days, places))).quantize(Decimal(1).scaleb(-places))


# --- Putting it together ---------------------------------------------------------------------


def forecast_from_inputs(inputs: ForecastInputs) -> AccountForecast:
    now = inputs.now
    burn = fit_burn(inputs.history, now=now, tz=inputs.tz)
    runs: dict[float, Simulation] = {}

    def run(factor: float) -> Simulation:
        key = round(factor, 4)
        if key not in runs:
            runs[key] = simulate(inputs, burn, key)
        return runs[key]

    central = run(1.0)
    horizon = float(inputs.horizon_days)

    def run_out(moment: datetime | None, attribute: str, *, already: bool = False) -> RunOut:
        if already:
            return RunOut(at=now, earliest=now, latest=now, already=True)
        days = (moment - now) / DAY if moment is not None else horizon
        k = burn.band(days)
        return RunOut(at=moment, earliest=getattr(run(1 + k), attribute), latest=getattr(run(1 - k), attribute))

    plans: dict[int, PlanForecast] = {}
    for plan in inputs.plans:
        if plan.expires_at <= now:
            continue
        k = burn.band((plan.expires_at - now) / DAY)
        plans[plan.id] = PlanForecast(
            purchase_id=plan.id,
            expires_at=plan.expires_at,
            tokens_remaining=plan.remaining,
            projected_unused_tokens=round(central.unused.get(plan.id, plan.remaining)),
            unused_low=round(run(1 + k).unused.get(plan.id, plan.remaining)),
            unused_high=round(run(1 - k).unused.get(plan.id, plan.remaining)),
            used_up_at=central.used_up_at.get(plan.id),
        )
    return AccountForecast(
        now=now,
        token_run_out=run_out(central.token_run_out, "token_run_out", already=_tokens_gone(inputs, central)),
        wallet_run_out=run_out(central.wallet_run_out, "wallet_run_out", already=_wallet_gone(inputs, central)),
        plans=plans,
        token_balance=sum(p.remaining for p in inputs.plans if p.effective_at <= now < p.expires_at),
        wallet_balance=inputs.wallet_balance,
        burn_rate_tokens_per_day=_per_day(central.relevant_demand),
        token_demand_per_day=_per_day(central.all_demand),
        wallet_burn_per_day=_per_day(central.wallet_charges, places=2),
        burn=burn,
        projection=_projection(central, burn, now, inputs.wallet_balance),
    )


def _tokens_gone(inputs: ForecastInputs, central: Simulation) -> bool:
    """The plans in effect have nothing left now (the simulation's run-out then falls on
    `now`, or is None once no plan with tokens covers the models in use)."""
    now = inputs.now
    in_effect = [p for p in inputs.plans if p.effective_at <= now < p.expires_at]
    at_now = central.token_run_out is not None and central.token_run_out <= now
    return at_now or (bool(in_effect) and sum(p.remaining for p in in_effect) <= 0)


def _wallet_gone(inputs: ForecastInputs, central: Simulation) -> bool:
    """Below zero, or at zero with usage charged to it from now on. A zero wallet the plans
    keep from being charged until later runs out then, not already."""
    at = central.wallet_run_out
    return inputs.wallet_balance < 0 or (at is not None and at <= inputs.now)


def _projection(sim: Simulation, burn: BurnModel, now: datetime, wallet_now: Decimal) -> list[ProjectedPoint]:
    """Daily points of the projected balances; the band scales what is consumed (expiries are certain)."""
    points: list[ProjectedPoint] = []
    last_day: date | None = None
    for index, (at, tokens, consumed, wallet, charged) in enumerate(sim.points):
        final = index == len(sim.points) - 1
        if not final and index and at.date() == last_day:
            continue
        last_day = at.date()
        k = burn.band((at - now) / DAY)
        points.append(
            ProjectedPoint(
                at=at,
                token_balance=round(tokens),
                token_low=round(max(0.0, tokens - consumed * k)),
                token_high=round(tokens + consumed * k),
                wallet_balance=Decimal(round(wallet, 2)).quantize(Decimal("0.01")),
                wallet_low=Decimal(round(wallet - charged * k, 2)).quantize(Decimal("0.01")),
                wallet_high=Decimal(round(wallet + charged * k, 2)).quantize(Decimal("0.01")),
            )
        )
        if sim.points and at - now > timedelta(days=HORIZON_DAYS):
            break
    return points


# --- Reading the database ------------------------------------------------------------------------


def read_history(account: Account, *, now: datetime) -> list[DayUsage]:
    """Complete days (of the dashboard's time zone) of consumption per model, from the rollup."""
    today = now.astimezone(dashboard_tz()).date()
    days = Period("custom", today - timedelta(days=LOOKBACK_DAYS), today - timedelta(days=1))
    rows = (
        usage_selectors.rollup_rows(account, days)
        .values("day", "model")
        .annotate(
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cached=Sum("cached_tokens"),
            spend=Sum("cost"),
        )
        .order_by("day", "model")
    )
    return [
        DayUsage(
            day=r["day"],
            model=r["model"],
            tokens=(r["prompt"] or 0) + (r["completion"] or 0),
            uncached_tokens=max((r["prompt"] or 0) - (r["cached"] or 0), 0) + (r["completion"] or 0),
            completion_tokens=r["completion"] or 0,
            cost=r["spend"] or Decimal(0),
        )
        for r in rows
    ]


def read_inputs(
    account: Account,
    *,
    now: datetime | None = None,
    statuses: Sequence[selectors.PlanStatus] | None = None,
    wallet: Decimal | None = None,
) -> ForecastInputs:
    """The forecast's inputs at `now`; `statuses` and `wallet`, when the caller has read them
    for the same moment, are used as they are (so both show the same plans and wallet)."""
    now = now or timezone.now()
    tz = dashboard_tz()
    if statuses is None:
        statuses = selectors.plan_statuses(account, now=now)
    plans = [
        PlanState(
            id=s.purchase.pk,
            tokens=s.purchase.tokens,
            remaining=s.tokens_remaining,
            effective_at=s.purchase.effective_at,
            expires_at=s.purchase.expires_at,
            models=tuple(s.purchase.allowed_models or ()),
            priority=s.purchase.priority,
            basis=s.purchase.token_basis,
            name=s.purchase.name,
        )
        for s in statuses
    ]
    return ForecastInputs(
        now=now,
        history=read_history(account, now=now),
        plans=plans,
        wallet_balance=selectors.wallet_balance(account, at=now) if wallet is None else wallet,
        tz=tz,
    )


def account_forecast(account: Account, *, now: datetime | None = None) -> AccountForecast:
    """The forecast of one account at `now` (see the module docstring), computed afresh.
    Pages, the API and alerts read it through `billing.balances.account_balances`, which
    computes it once per moment for all of them."""
    return forecast_from_inputs(read_inputs(account, now=now))
