"""Simulating forward: the projected consumption burns the plans in the allocation engine's
order, and what no plan covers is charged to the wallet."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise

from billing.forecast.model import DAY, EPSILON, MAX_SIMULATED_DAYS, BurnModel, ForecastInputs, PlanState


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

    def in_effect(plan: PlanState, at: datetime) -> bool:
        return plan.effective_at <= at < plan.expires_at

    def balance(at: datetime, ids: set[int] | None = None) -> float:
        return sum(left[p.id] for p in plans if in_effect(p, at) and (ids is None or p.id in ids))

    sim.points.append((now, balance(now), 0.0, wallet, 0.0))
    cuts = _boundaries(inputs, end)
    for start, stop in pairwise(cuts):
        for plan in plans:  # expiries at this boundary: what is left is unused
            if plan.expires_at <= start and plan.id not in sim.unused:
                sim.unused[plan.id] = left[plan.id]
                left[plan.id] = 0.0
        length = (stop - start) / DAY
        middle = start + (stop - start) / 2
        demand = factor * burn.tokens_per_day((middle - now) / DAY, middle.astimezone(inputs.tz).weekday()) * length
        before = balance(start, relevant)
        if relevant and sim.token_run_out is None and before <= EPSILON and start < horizon_end:
            sim.token_run_out = start
        wanted = 0.0  # what the relevant plans were asked for, to time a run-out inside the step
        asked: dict[int, float] = defaultdict(float)
        left_before = dict(left)
        wallet_charge = 0.0
        relevant_tokens = 0.0
        for model, share in mix.items():
            tokens = demand * share.share
            uncovered = 1.0
            first = True
            for plan in covering[model]:
                if not in_effect(plan, start):
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
        for plan_id, need in asked.items():
            if left_before[plan_id] > EPSILON and left[plan_id] <= EPSILON and plan_id not in sim.used_up_at:
                sim.used_up_at[plan_id] = start + (stop - start) * min(1.0, left_before[plan_id] / need)
        after = balance(start, relevant)
        if relevant and sim.token_run_out is None and before > EPSILON and after <= EPSILON and start < horizon_end:
            sim.token_run_out = start + (stop - start) * min(1.0, before / wanted if wanted > 0 else 1.0)
        if wallet_charge > 0 and sim.wallet_run_out is None and start < horizon_end:
            if wallet <= 0:
                sim.wallet_run_out = start
            elif wallet - wallet_charge <= 0:
                sim.wallet_run_out = start + (stop - start) * (wallet / wallet_charge)
        wallet -= wallet_charge
        charged += wallet_charge
        days_in = (start - now) / DAY
        if days_in < 7:
            sim.relevant_demand.append((length, relevant_tokens))
            sim.all_demand.append((length, demand))
            sim.wallet_charges.append((length, wallet_charge))
        sim.points.append((stop, balance(stop), consumed, wallet, charged))
    for plan in plans:
        sim.unused.setdefault(plan.id, left[plan.id])
    for name in ("token_run_out", "wallet_run_out"):
        moment = getattr(sim, name)
        if moment is not None and moment > horizon_end:
            setattr(sim, name, None)
    return sim
