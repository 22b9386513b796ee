"""Simulating forward: the projected consumption burns the plans in the allocation engine's
order, and what no plan covers is charged to the wallet."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import NamedTuple

from billing.forecast.model import (
    DAY,
    EPSILON,
    MAX_SIMULATED_DAYS,
    BurnModel,
    ForecastInputs,
    ModelMix,
    PlanState,
)


@dataclass
class Simulation:
    token_run_out: datetime | None = None
    wallet_run_out: datetime | None = None
    unused: dict[int, float] = field(default_factory=dict)
    used_up_at: dict[int, datetime] = field(default_factory=dict)
    # (moment, token balance of plans in effect, tokens consumed so far, wallet, charged so far)
    points: list[tuple[datetime, float, float, float, float]] = field(default_factory=list)
    relevant_demand: list[tuple[float, float]] = field(default_factory=list)  # (days, tokens) of the first week
    all_demand: list[tuple[float, float]] = field(default_factory=list)
    wallet_charges: list[tuple[float, float]] = field(default_factory=list)


def _boundaries(inputs: ForecastInputs, end: datetime) -> list[datetime]:
    now = inputs.now
    cuts = {now, end}
    midnight = datetime.combine(now.astimezone(inputs.tz).date() + DAY, time(0), tzinfo=inputs.tz)
    while midnight < end:
        cuts.add(midnight.astimezone(UTC))
        midnight = datetime.combine(midnight.date() + DAY, time(0), tzinfo=inputs.tz)
    for plan in inputs.plans:
        for moment in (plan.effective_at, plan.expires_at):
            if now < moment < end:
                cuts.add(moment)
    return sorted(cuts)


def _relevant_plans(plans: Sequence[PlanState], models: Iterable[str], now: datetime) -> list[PlanState]:
    """Plans not expired, with tokens left, that cover at least one model in use."""
    models = list(models)
    return [p for p in plans if p.expires_at > now and p.remaining > 0 and any(p.covers(m) for m in models)]


def simulate(inputs: ForecastInputs, burn: BurnModel, factor: float = 1.0) -> Simulation:
    now = inputs.now
    plans = sorted((p for p in inputs.plans if p.expires_at > now), key=lambda p: p.burn_order)
    latest_expiry = max((p.expires_at for p in plans), default=now)
    horizon_end = now + timedelta(days=inputs.horizon_days)
    end = min(max(horizon_end, latest_expiry), now + timedelta(days=MAX_SIMULATED_DAYS))
    mix = burn.mix
    relevant = {p.id for p in _relevant_plans(plans, [m for m, x in mix.items() if x.share > 0], now)}
    covering = {model: [p for p in plans if p.covers(model)] for model in mix}
    left = {p.id: float(max(p.remaining, 0)) for p in plans}
    wallet = float(inputs.wallet_balance)
    sim = Simulation()
    consumed = charged = 0.0
    sim.points.append((now, _balance(plans, left, now), 0.0, wallet, 0.0))
    for start, stop in pairwise(_boundaries(inputs, end)):
        _expire(plans, left, start, sim)
        length = (stop - start) / DAY
        middle = start + (stop - start) / 2
        demand = factor * burn.tokens_per_day((middle - now) / DAY, middle.astimezone(inputs.tz).weekday()) * length
        before = _balance(plans, left, start, relevant)
        if relevant and sim.token_run_out is None and before <= EPSILON and start < horizon_end:
            sim.token_run_out = start
        left_before = dict(left)
        step = _burn(mix, covering, relevant, left, start, demand, consumed)
        consumed = step.consumed
        _note_used_up(sim, step.asked, left_before, left, start, stop)
        after = _balance(plans, left, start, relevant)
        if relevant and sim.token_run_out is None and before > EPSILON and after <= EPSILON and start < horizon_end:
            wanted = step.wanted
            sim.token_run_out = start + (stop - start) * min(1.0, before / wanted if wanted > 0 else 1.0)
        if start < horizon_end:
            _note_wallet_run_out(sim, wallet, step.wallet_charge, start, stop)
        wallet -= step.wallet_charge
        charged += step.wallet_charge
        if (start - now) / DAY < 7:
            sim.relevant_demand.append((length, step.relevant_tokens))
            sim.all_demand.append((length, demand))
            sim.wallet_charges.append((length, step.wallet_charge))
        sim.points.append((stop, _balance(plans, left, stop), consumed, wallet, charged))
    for plan in plans:
        sim.unused.setdefault(plan.id, left[plan.id])
    for name in ("token_run_out", "wallet_run_out"):
        moment = getattr(sim, name)
        if moment is not None and moment > horizon_end:
            setattr(sim, name, None)
    return sim


def _in_effect(plan: PlanState, at: datetime) -> bool:
    return plan.effective_at <= at < plan.expires_at


def _balance(plans: Sequence[PlanState], left: dict[int, float], at: datetime, ids: set[int] | None = None) -> float:
    """Tokens left in the plans in effect at `at` (of `ids` only, when given)."""
    return sum(left[p.id] for p in plans if _in_effect(p, at) and (ids is None or p.id in ids))


def _expire(plans: Sequence[PlanState], left: dict[int, float], start: datetime, sim: Simulation) -> None:
    """Plans expired by this boundary: what is left of them is unused."""
    for plan in plans:
        if plan.expires_at <= start and plan.id not in sim.unused:
            sim.unused[plan.id] = left[plan.id]
            left[plan.id] = 0.0


class _Step(NamedTuple):
    wanted: float  # what the relevant plans were asked for, to time a run-out inside the step
    relevant_tokens: float
    wallet_charge: float
    consumed: float  # the running total, this step included
    asked: dict[int, float]


def _burn(
    mix: dict[str, ModelMix],
    covering: dict[str, list[PlanState]],
    relevant: set[int],
    left: dict[int, float],
    start: datetime,
    demand: float,
    consumed: float,
) -> _Step:
    """One step's demand burnt against the plans in effect, in burn order (`left` is updated);
    what no plan covers is charged to the wallet."""
    wanted = relevant_tokens = wallet_charge = 0.0
    asked: dict[int, float] = defaultdict(float)
    for model, share in mix.items():
        tokens = demand * share.share
        uncovered = 1.0
        first = True
        for plan in covering[model]:
            if not _in_effect(plan, start):
                continue
            need = tokens * share.ratio(plan.basis) * uncovered
            if first and plan.id in relevant:
                wanted += need
                relevant_tokens += tokens
            first = False
            if need <= 0:
                continue
            asked[plan.id] += need
            if left[plan.id] <= 0:
                continue
            taken = min(left[plan.id], need)
            left[plan.id] -= taken
            consumed += taken
            uncovered *= 1 - taken / need
        wallet_charge += uncovered * tokens * share.cost_per_token
    return _Step(wanted, relevant_tokens, wallet_charge, consumed, asked)


def _note_used_up(
    sim: Simulation,
    asked: dict[int, float],
    left_before: dict[int, float],
    left: dict[int, float],
    start: datetime,
    stop: datetime,
) -> None:
    """The moment inside the step each plan emptied during it ran out, by the share of its demand it met."""
    for plan_id, need in asked.items():
        if left_before[plan_id] > EPSILON and left[plan_id] <= EPSILON and plan_id not in sim.used_up_at:
            sim.used_up_at[plan_id] = start + (stop - start) * min(1.0, left_before[plan_id] / need)


def _note_wallet_run_out(sim: Simulation, wallet: float, charge: float, start: datetime, stop: datetime) -> None:
    """The wallet's run-out, at the start of the step when it is already empty, else inside it."""
    if charge > 0 and sim.wallet_run_out is None:
        if wallet <= 0:
            sim.wallet_run_out = start
        elif wallet - charge <= 0:
            sim.wallet_run_out = start + (stop - start) * (wallet / charge)
