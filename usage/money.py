"""Usage value and money paid, side by side.

*Usage value* (`cost` in the API) is the price book × tokens, or the cost the provider
reported: what the usage is worth at list price. *Paid* is what the account actually paid
for it: tokens a plan covered at that purchase's effective rate (price ÷ tokens granted),
plus what the wallet was charged. Usage knows the first; the second comes from billing's
allocations, and usage never imports billing. So usage says here what it needs, a
`PaidSource`, and billing registers one when it starts (`BillingConfig.ready`). Without a
source, paid is unknown (None) and shown as such, never as zero.

A request without a price has no usage value: its cost is left out of `cost` and counted
in `unpriced_requests`. If the wallet paid for it, what it paid is unknown too (the
wallet charges at the usage value), and `Paid.unknown_requests` counts it. Plan tokens
have a known price even then; `Paid.for_unpriced` is that part, so that savings
(value − paid) compare like with like.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from usage import selectors
from usage.models import Account
from usage.periods import Period
from usage.selectors import SUMMARY_DIMENSIONS, Totals

ZERO = Decimal(0)


@dataclass(frozen=True)
class Paid:
    """Money paid for some usage. `amount` is in the account's currency; what was paid in
    another currency is kept apart in `not_converted` (by currency), never added as zero."""

    amount: Decimal = ZERO
    requests: int = 0  # requests whose payment is known to billing (allocated)
    not_converted: Mapping[str, Decimal] = field(default_factory=dict)
    unknown_requests: int = 0  # charged to the wallet without a price: the amount is not known
    for_unpriced: Decimal = ZERO  # part of `amount` paid for requests that have no usage value
    plan_tokens: int = 0  # tokens plans covered

    def __add__(self, other: Paid) -> Paid:
        currencies = dict(self.not_converted)
        for currency, amount in other.not_converted.items():
            currencies[currency] = currencies.get(currency, ZERO) + amount
        return Paid(
            amount=self.amount + other.amount,
            requests=self.requests + other.requests,
            not_converted=currencies,
            unknown_requests=self.unknown_requests + other.unknown_requests,
            for_unpriced=self.for_unpriced + other.for_unpriced,
            plan_tokens=self.plan_tokens + other.plan_tokens,
        )

    @property
    def complete(self) -> bool:
        """Whether `amount` is the whole of what was paid."""
        return not self.not_converted and not self.unknown_requests


class PaidSource(Protocol):
    def paid_by(
        self, account: Account, period: Period, dimension: str, only: Mapping[str, str] | None = None
    ) -> dict[Any, Paid]:
        """Paid per value of `dimension` ("model", "api_key__name", "team" or "day") over the
        period; with `only`, of one model, key name and/or team ("" for none)."""
        ...


_source: PaidSource | None = None


def register_paid_source(source: PaidSource | None) -> None:
    global _source
    _source = source


def _key(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return "" if value in (None, "—") else str(value)


def paid_by(
    account: Account, period: Period, dimension: str, only: Mapping[str, str] | None = None
) -> dict[str, Paid] | None:
    """Paid per group (keys as the summary writes them: "" for none, days in ISO), or None
    when nothing provides it; `only` as in `usage.selectors.only_q`."""
    if _source is None:
        return None
    found: dict[str, Paid] = {}
    for value, paid in _source.paid_by(account, period, dimension, only).items():
        key = _key(value)
        found[key] = found[key] + paid if key in found else paid
    return found


def total_of(groups: Mapping[str, Paid] | None) -> Paid | None:
    return None if groups is None else sum(groups.values(), Paid())


def paid_total(account: Account, period: Period) -> Paid | None:
    return total_of(paid_by(account, period, "model"))


@dataclass(frozen=True)
class MoneyRow:
    """A group's usage (tokens, requests, usage value) and what was paid for it."""

    key: str
    totals: Totals
    paid: Paid | None  # None: nothing says what was paid

    @property
    def value(self) -> Decimal:
        return self.totals.cost

    @property
    def unpriced(self) -> bool:
        return self.totals.unpriced

    @property
    def pending_requests(self) -> int:
        """Requests recorded but not yet allocated to plans or the wallet: paid leaves them out
        until the allocation refresh (seconds after they arrive) has run."""
        return 0 if self.paid is None else max(self.totals.requests - self.paid.requests, 0)

    @property
    def paid_complete(self) -> bool:
        """Whether `paid.amount` is all that was paid: nothing unpriced, unconverted or pending."""
        return self.paid is not None and self.paid.complete and not self.pending_requests

    @property
    def savings(self) -> Decimal | None:
        """Usage value − paid, over requests that have a usage value; None when paid is not
        known in the account's currency."""
        if self.paid is None or self.paid.not_converted:
            return None
        return self.value - (self.paid.amount - self.paid.for_unpriced)


def with_paid(rows: Iterable[Any], paid: Mapping[str, Paid] | None) -> list[MoneyRow]:
    """Rows with `key` and `totals` (summary rows, top groups) joined with paid by key."""
    return [MoneyRow(row.key, row.totals, None if paid is None else paid.get(_key(row.key), Paid())) for row in rows]


def summary(
    *, account: Account, period: Period, group_by: str, only: Mapping[str, str] | None = None
) -> tuple[list[MoneyRow], MoneyRow]:
    """The usage summary (usage.selectors.summary) with paid beside each row and the total;
    `only` restricts both to one model, key and/or team."""
    rows, total = selectors.summary(account=account, period=period, group_by=group_by, only=only)
    paid = paid_by(account, period, SUMMARY_DIMENSIONS[group_by], only)
    return with_paid(rows, paid), MoneyRow("", total, total_of(paid))


@dataclass(frozen=True)
class Compared:
    """A group's figures in a period and in the period it is compared with (None: no usage then)."""

    row: MoneyRow
    previous: MoneyRow | None

    @property
    def key(self) -> str:
        return self.row.key

    @property
    def previous_paid(self) -> Decimal | None:
        if self.previous is None or self.previous.paid is None:
            return None
        return self.previous.paid.amount


def compared(rows: Iterable[MoneyRow], previous: Iterable[MoneyRow]) -> list[Compared]:
    """Each row beside the same group's row of the compared period (by key), in `rows`' order."""
    before = {row.key: row for row in previous}
    return [Compared(row, before.get(row.key)) for row in rows]
