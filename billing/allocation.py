"""Plan burn-down and wallet charges as a pure function of purchases and records.

Records are taken in the order of (occurred_at, request_id), which does not depend
on when or in which batch they arrived. Each record's tokens burn the purchases
that cover it, in burn order (higher priority, then sooner expiry, then earlier
effective_at, then the one recorded first); what no purchase covers goes to the
wallet at the record's cost, pro rata. A purchase covers a record when it is
effective at the record's time (effective_at <= t < expires_at), allows its model
(names or globs, empty = all) and has tokens left.

The state between two records is only "tokens used per purchase", so processing
can resume from any checkpoint given what was used before it: that is what lets
`billing.recompute.refresh_allocations` recompute forward from the earliest
affected record instead of from the beginning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from billing.models import TokenBasis, models_match

AMOUNT_QUANTUM = Decimal("1e-10")


@dataclass(frozen=True, slots=True)
class Grant:
    """A purchase as the engine sees it."""

    id: int
    tokens: int
    effective_at: datetime
    expires_at: datetime
    models: tuple[str, ...] = ()
    priority: int = 0
    basis: str = TokenBasis.TOTAL

    @property
    def burn_order(self) -> tuple[int, datetime, datetime, int]:
        return (-self.priority, self.expires_at, self.effective_at, self.id)

    def is_effective(self, at: datetime) -> bool:
        return self.effective_at <= at < self.expires_at


@dataclass(frozen=True, slots=True)
class Usage:
    """A record as the engine sees it."""

    id: int
    request_id: str
    occurred_at: datetime
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal | None = None

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.request_id)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def tokens_for(self, basis: str) -> int:
        if basis == TokenBasis.COMPLETION:
            return self.completion_tokens
        if basis == TokenBasis.UNCACHED:
            return max(self.prompt_tokens - self.cached_tokens, 0) + self.completion_tokens
        return self.total_tokens


@dataclass(frozen=True, slots=True)
class Share:
    """One allocation row: `purchase_id` None is the wallet."""

    record_id: int
    occurred_at: datetime
    purchase_id: int | None
    tokens: int
    amount: Decimal | None = None
    record_cost: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    purchase_id: int
    tokens: int
    expired_at: datetime


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def charge(cost: Decimal, share: Fraction) -> Decimal:
    """`share` of `cost`, rounded half-even to the money quantum (exact arithmetic before rounding)."""
    if share == 1:
        return cost
    with localcontext() as context:
        context.prec = 80
        exact = cost * share.numerator / share.denominator
        return exact.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass
class Allocator:
    """Allocates records one at a time, in order, from the tokens each grant has left."""

    grants: Sequence[Grant]
    used: dict[int, int] = field(default_factory=dict)
    _ordered: list[Grant] = field(init=False)
    _covering: dict[str, list[Grant]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._ordered = sorted(self.grants, key=lambda g: g.burn_order)
        self.used = {g.id: self.used.get(g.id, 0) for g in self._ordered}

    def remaining(self, grant: Grant) -> int:
        return grant.tokens - self.used[grant.id]

    def _for_model(self, model: str) -> list[Grant]:
        found = self._covering.get(model)
        if found is None:
            found = [g for g in self._ordered if models_match(g.models, model)]
            self._covering[model] = found
        return found

    def allocate(self, usage: Usage) -> list[Share]:
        """The rows of one record; at least one, so that every allocated record has a row."""
        shares: list[Share] = []
        uncovered = Fraction(1)  # share of the record no grant has taken yet
        for grant in self._for_model(usage.model):
            if not grant.is_effective(usage.occurred_at):
                continue
            left = self.remaining(grant)
            tokens = usage.tokens_for(grant.basis)
            if left <= 0 or tokens <= 0:
                continue
            wanted = _ceil(tokens * uncovered)  # exact when every grant counts the same tokens
            taken = min(left, wanted)
            self.used[grant.id] += taken
            shares.append(Share(usage.id, usage.occurred_at, grant.id, taken))
            uncovered = Fraction(0) if taken == wanted else uncovered - Fraction(taken, tokens)
            if uncovered <= 0:
                return shares
        amount = None if usage.cost is None else charge(usage.cost, uncovered)
        shares.append(
            Share(usage.id, usage.occurred_at, None, round(usage.total_tokens * uncovered), amount, usage.cost)
        )
        return shares

    def expiries(self, *, now: datetime, since: datetime | None = None) -> list[Expired]:
        """Grants that expired by `now` (and at or after `since`), with their unused tokens."""
        return [
            Expired(g.id, max(self.remaining(g), 0), g.expires_at)
            for g in self._ordered
            if g.expires_at <= now and (since is None or g.expires_at >= since)
        ]


@dataclass
class Outcome:
    shares: list[Share]
    used: dict[int, int]
    expired: list[Expired]


def allocate(
    grants: Sequence[Grant],
    records: Iterable[Usage],
    *,
    now: datetime,
    used_before: Mapping[int, int] | None = None,
    since: datetime | None = None,
) -> Outcome:
    """Allocate `records` (any order: they are sorted) against `grants` in one pass.

    `used_before` and `since` resume from a checkpoint: the tokens each grant had
    used on records before `since`, whose allocations stay as they are.
    """
    allocator = Allocator(grants, dict(used_before or {}))
    shares: list[Share] = []
    for usage in sorted(records, key=lambda u: u.order):
        shares.extend(allocator.allocate(usage))
    return Outcome(shares, dict(allocator.used), allocator.expiries(now=now, since=since))
