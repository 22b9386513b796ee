"""Severity tiers of alert rules: which tiers a rule has, which one a figure is in, and its name.

Tiers go from the least to the most severe. Whether a figure crosses a tier depends on the
kind: a balance falls *below* it, a run-out comes *at most* that many days away, a share
unused, a sync's age or a spend multiple goes *above* it, errors or a budget's percentage
reach *at least* it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from billing.models import AlertKind, AlertRule, parse_tiers

BELOW, AT_MOST, ABOVE, AT_LEAST = "below", "at_most", "above", "at_least"
DIRECTION = {
    AlertKind.TOKEN_BALANCE_PERCENT: BELOW,
    AlertKind.TOKEN_BALANCE_TOKENS: BELOW,
    AlertKind.WALLET_BELOW: BELOW,
    AlertKind.RUNOUT_WITHIN: AT_MOST,
    AlertKind.PLAN_EXPIRING_UNUSED: ABOVE,
    AlertKind.SYNC_FAILING: ABOVE,
    AlertKind.SPEND_SPIKE: ABOVE,
    AlertKind.ERROR_SURGE: AT_LEAST,
    AlertKind.BUDGET: AT_LEAST,
}
# The standard tiers beyond a rule's threshold, when it lists none of its own.
MORE_SEVERE: dict[str, tuple[int, ...]] = {
    AlertKind.TOKEN_BALANCE_PERCENT: (10, 0),
    AlertKind.TOKEN_BALANCE_TOKENS: (0,),
    AlertKind.WALLET_BELOW: (0,),
    AlertKind.RUNOUT_WITHIN: (14, 7, 3, 1),
}
TOKEN_KINDS = (AlertKind.TOKEN_BALANCE_PERCENT, AlertKind.TOKEN_BALANCE_TOKENS)


def _more_severe(direction: str, a: Decimal, b: Decimal) -> bool:
    """Whether tier `a` is more severe than tier `b`."""
    return a < b if direction in (BELOW, AT_MOST) else a > b


def effective_tiers(rule: AlertRule) -> list[Decimal]:
    """The rule's tiers, least severe first: its own, or its threshold and the standard ones beyond."""
    direction = DIRECTION[AlertKind(rule.kind)]
    if rule.kind == AlertKind.BUDGET and rule.budget is not None:
        tiers = rule.budget.threshold_values
    elif rule.tiers:
        tiers = parse_tiers(rule.tiers)
    else:
        first = Decimal(rule.threshold)
        tiers = [
            first,
            *(Decimal(t) for t in MORE_SEVERE.get(rule.kind, ()) if _more_severe(direction, Decimal(t), first)),
        ]
    ordered = sorted(set(tiers), reverse=direction in (BELOW, AT_MOST))
    return ordered or [Decimal(rule.threshold)]


def crossed(rule: AlertRule, value: Decimal, tier: Decimal) -> bool:
    direction = DIRECTION[AlertKind(rule.kind)]
    if direction == BELOW:
        # "Below 0 %" cannot happen to a token balance: a 0 tier means the plans are used up.
        return value < tier or (tier == 0 and rule.kind in TOKEN_KINDS and value <= 0)
    if direction == AT_MOST:
        return value <= tier
    if direction == ABOVE:
        return value > tier
    return value >= tier


def tier_of(rule: AlertRule, value: Decimal | None, tiers: Sequence[Decimal] | None = None) -> int:
    """How many of the rule's tiers `value` has crossed (0: none, the rule does not fire)."""
    if value is None:
        return 0
    tiers = effective_tiers(rule) if tiers is None else tiers
    return max((i + 1 for i, tier in enumerate(tiers) if crossed(rule, value, tier)), default=0)


def severity_label(tier: int, tiers: int) -> str:
    """ "warning" for the least severe tier, "critical" for the most severe, "high" between;
    "ok" when not firing. A rule with one tier says "warning"."""
    if tier <= 0:
        return "ok"
    if tier == tiers and tiers > 1:
        return "critical"
    return "warning" if tier == 1 else "high"


# --- What a rule says now ------------------------------------------------------------------
