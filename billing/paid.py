"""What was paid for usage: the DailyPaid rollup and the source the usage pages read it from.

Paid for a record = its tokens each purchase covered × that purchase's effective rate
(price ÷ tokens granted, in the purchase's currency) + what the wallet was charged for it.
Each allocation row's share is rounded to the money quantum on its own, so sums of rows
are exact whatever order or batches they are added in.

The rollup follows the allocations: `billing.recompute.recompute_from` subtracts what the
rows it deletes had added (`Ledger.remove`) and adds what it writes (`Ledger.add`), in the
same transaction, under the account's lock. `rebuild` recomputes it from every allocation;
`refresh_allocations` runs it once when the rollup's days are not the dashboard's time zone
(the first time, or after DASHBOARD_TIME_ZONE changed). Until then `RollupPaidSource`
reads the allocations of the period instead: slower, but right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from itertools import groupby
from typing import Any, NamedTuple

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import Coalesce

from billing.allocation import AMOUNT_QUANTUM
from billing.models import Allocation, BillingState, DailyPaid, PlanPurchase
from usage import rollups
from usage.models import Account
from usage.money import Paid
from usage.periods import Period, dashboard_tz
from usage.selectors import only_q

ZERO = Decimal(0)
CHUNK_SIZE = 5000


class Group(NamedTuple):
    day: date
    model: str
    api_key_id: int | None
    team: str
    currency: str


@dataclass
class Figures:
    requests: int = 0
    plan_tokens: int = 0
    plan_paid: Decimal = ZERO
    wallet_paid: Decimal = ZERO
    unpriced_paid: Decimal = ZERO
    unknown_requests: int = 0

    def add(self, other: Figures, sign: int = 1) -> None:
        for name in DailyPaid.FIGURES:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) for name in DailyPaid.FIGURES)


class RecordShares(NamedTuple):
    """One record's allocation rows, with what groups it: (purchase id or None, tokens, amount)."""

    occurred_at: datetime
    model: str
    api_key_id: int | None
    team: str
    unpriced: bool
    shares: Sequence[tuple[int | None, int, Decimal | None]]


def paid_for_tokens(tokens: int, purchase: PlanPurchase) -> Decimal:
    """What `tokens` of a purchase were paid: price × tokens ÷ tokens granted, rounded to the quantum."""
    with localcontext() as context:
        context.prec = 80
        return (purchase.price * tokens / purchase.tokens).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


class Ledger:
    """Paid per group, as signed changes to apply to the rollup."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.tz = dashboard_tz()
        self.groups: dict[Group, Figures] = defaultdict(Figures)
        self._purchases: dict[int, PlanPurchase] = {}

    def _purchase(self, purchase_id: int) -> PlanPurchase:
        if purchase_id not in self._purchases:  # voided ones too: their old rows are subtracted
            self._purchases |= {p.pk: p for p in PlanPurchase.objects.filter(account=self.account)}
        return self._purchases[purchase_id]

    def _record(self, record: RecordShares, sign: int) -> None:
        day = record.occurred_at.astimezone(self.tz).date()
        home = Group(day, record.model, record.api_key_id, record.team, self.account.currency)
        self.groups[home].add(Figures(requests=1), sign)
        for purchase_id, tokens, amount in record.shares:
            if purchase_id is not None:
                if not tokens:
                    continue
                purchase = self._purchase(purchase_id)
                paid = paid_for_tokens(tokens, purchase)
                figures = self.groups[Group(day, record.model, record.api_key_id, record.team, purchase.currency)]
                figures.add(Figures(plan_tokens=tokens, plan_paid=paid, unpriced_paid=paid * record.unpriced), sign)
                continue
            unknown = amount is None and tokens > 0  # the wallet took tokens it could not value
            self.groups[home].add(Figures(wallet_paid=amount or ZERO, unknown_requests=int(unknown)), sign)

    def add(self, records: Iterable[RecordShares]) -> None:
        for record in records:
            self._record(record, 1)

    def remove(self, records: Iterable[RecordShares]) -> None:
        for record in records:
            self._record(record, -1)

    def apply(self) -> None:
        """Add the changes to the stored rollup; rows left with nothing are deleted."""
        changes = {group: figures for group, figures in self.groups.items() if not figures.empty}
        if not changes:
            return
        first_day = min(group.day for group in changes)
        stored = {
            Group(r.day, r.model, r.api_key_id, r.team, r.currency): r
            for r in DailyPaid.objects.filter(account=self.account, day__gte=first_day)
        }
        created, updated, emptied = [], [], []
        for group, change in changes.items():
            row = stored.get(group)
            if row is None:
                row = DailyPaid(account=self.account, **group._asdict())
                created.append(row)
            else:
                updated.append(row)
            total = Figures(*(getattr(row, name) for name in DailyPaid.FIGURES))
            total.add(change)
            for name in DailyPaid.FIGURES:
                setattr(row, name, getattr(total, name))
            if total.empty and row.pk is not None:
                emptied.append(row.pk)
        DailyPaid.objects.filter(pk__in=emptied).delete()
        DailyPaid.objects.bulk_create([row for row in created if not _empty(row)], batch_size=1000)
        DailyPaid.objects.bulk_update(
            [row for row in updated if row.pk not in emptied], DailyPaid.FIGURES, batch_size=1000
        )
        self.groups.clear()


def _empty(row: DailyPaid) -> bool:
    return not any(getattr(row, name) for name in DailyPaid.FIGURES)


def stored_shares(
    account: Account, *, start: datetime | None = None, end: datetime | None = None, api_key_id: int | None = None
) -> Iterator[RecordShares]:
    """The stored allocation rows with occurred_at in [start, end) (of one key's records, with
    `api_key_id`), one RecordShares per record.

    A record's rows share its occurred_at, so ordering by (occurred_at, record) keeps them
    together; whether the record had a usage value is read from the cost its rows were
    allocated with, which is what the rollup counted it as when they were written."""
    rows = Allocation.objects.filter(account=account)
    if start is not None:
        rows = rows.filter(occurred_at__gte=start)
    if end is not None:
        rows = rows.filter(occurred_at__lt=end)
    if api_key_id is not None:
        rows = rows.filter(record__api_key_id=api_key_id)
    fields = (
        "occurred_at",
        "record_id",
        "purchase_id",
        "tokens",
        "amount",
        "record_cost",
        "record__model",
        "record__api_key_id",
        "record__team",
    )
    ordered = rows.order_by("occurred_at", "record_id", "purchase_id").values_list(*fields)
    for _, found in groupby(ordered.iterator(chunk_size=CHUNK_SIZE), key=lambda row: row[1]):
        shares = list(found)
        first = shares[0]
        yield RecordShares(
            first[0], first[6], first[7], first[8], first[5] is None, [(row[2], row[3], row[4]) for row in shares]
        )


def rebuild(account: Account) -> int:
    """Recompute the account's rollup from every allocation; returns the rows written.

    Days before the raw records retention keeps (RAW_RETENTION_MONTHS) stay as they are: an
    allocation names its record's model, key and team only through the record, which is gone."""
    since, first_day = rollups.raw_start(rollups.DAILY)
    kept = DailyPaid.objects.filter(account=account)
    if first_day is not None:
        kept = kept.filter(day__gte=first_day)
    kept.delete()
    ledger = Ledger(account)
    ledger.add(stored_shares(account, start=since))
    ledger.apply()
    return DailyPaid.objects.filter(account=account).count()


def rollup_is_current(account: Account) -> bool:
    zone = BillingState.objects.filter(account=account).values_list("paid_rollup_zone", flat=True).first()
    return zone == settings.DASHBOARD_TIME_ZONE


def _paid_of(figures: dict[str, Any], account: Account) -> Paid:
    currency = figures["currency"]
    amount = figures["plan_paid"] + figures["wallet_paid"]
    if currency != account.currency:
        return Paid(not_converted={currency: amount} if amount else {}, plan_tokens=figures["plan_tokens"])
    return Paid(
        requests=figures["requests"],
        amount=amount,
        unknown_requests=figures["unknown_requests"],
        for_unpriced=figures["unpriced_paid"],
        plan_tokens=figures["plan_tokens"],
    )


class RollupPaidSource:
    """usage.money's PaidSource: paid per model, key name, team or day, from the rollup."""

    def paid_by(
        self, account: Account, period: Period, dimension: str, only: Mapping[str, str] | None = None
    ) -> dict[Any, Paid]:
        if not rollup_is_current(account):
            return self._from_allocations(account, period, dimension, only or {})
        rows = (
            DailyPaid.objects.filter(account=account, day__gte=period.first_day, day__lte=period.last_day)
            .filter(only_q(only))
            .values(dimension, "currency")
            .annotate(
                **{
                    name: Coalesce(Sum(name), 0 if name.endswith(("tokens", "requests")) else ZERO)
                    for name in DailyPaid.FIGURES
                }
            )
            .order_by()
        )
        found: dict[Any, Paid] = {}
        for row in rows:
            key = row.pop(dimension)
            paid = _paid_of(row, account)
            found[key] = found[key] + paid if key in found else paid
        return found

    def _from_allocations(
        self, account: Account, period: Period, dimension: str, only: Mapping[str, str]
    ) -> dict[Any, Paid]:
        ledger = Ledger(account)
        ledger.add(stored_shares(account, start=period.start, end=period.end))
        names = dict(account.api_keys.values_list("pk", "name"))
        found: dict[Any, Paid] = {}
        for group, figures in ledger.groups.items():
            values = {
                "model": group.model,
                "api_key__name": names.get(group.api_key_id) if group.api_key_id else None,
                "team": group.team,
                "day": group.day,
            }
            if any((values[name] or "") != value for name, value in only.items()):
                continue
            key = values[dimension]
            paid = _paid_of({"currency": group.currency, **vars(figures)}, account)
            found[key] = found[key] + paid if key in found else paid
        return found
