"""The billing half of the demo data set (`manage.py seed_demo`).

Placed relative to the usage window (start S, end U, N days) so that the story
holds for any --days:

- a small Claude trial that expires early with tokens left (recorded as expired);
- a Starter plan for GPT, Claude and Qwen that runs out about a quarter into the
  window, so the wallet pays for a while ("plans used up before the top-up");
- a top-up after that incident, then a Pro plan for GPT models paid from the wallet,
  after which Claude and Qwen are paid from the wallet;
- a DeepSeek pack with a higher priority that expires three days after U with
  tokens left;
- a Pro purchase entered twice by mistake and voided (see the audit trail);
- no plan covers doubao or the embeddings model: they go to the wallet;
- daily balances read off the console (manual provider) that drift about 3% from
  what the dashboard computes.

Deterministic (every amount follows from N, the seed and the usage seeded before it) and idempotent: purchases
and entries carry fixed idempotency keys and are only recorded when missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.db.models import F, Sum

from billing import alerts, services
from billing.audit import Actor
from billing.budgets import spend
from billing.budgets.services import BudgetData, create_budget
from billing.models import (
    AlertKind,
    AlertRule,
    Allocation,
    BalanceSnapshot,
    BalanceSource,
    Budget,
    PlanPurchase,
    WalletEntry,
    WalletEntryKind,
)
from billing.recompute import refresh_allocations
from usage.demo import DemoWindow
from usage.models import Account, UsageRecord

ACTOR = Actor.system("seed_demo")
DRIFT = Decimal("0.03")  # the console's balance goes down 3% faster than the dashboard's
CHAT_MODELS = ["gpt-*", "claude-*", "qwen-*"]
SNAPSHOT_NOTE = "Read off the TOKI console (demo data)"
CENT = Decimal("0.01")


@dataclass
class BillingReport:
    purchases_created: int = 0
    entries_created: int = 0
    snapshots_created: int = 0
    records_allocated: int = 0
    alert_rules_created: int = 0
    alert_emails: int = 0


def _key(seed: int, name: str) -> str:
    return f"demo:{seed}:{name}"


def _purchase(account: Account, report: BillingReport, data: services.PurchaseData) -> PlanPurchase:
    found = PlanPurchase.objects.filter(account=account, idempotency_key=data.idempotency_key).first()
    if found is not None:
        return found
    purchase, created = services.record_purchase(account, data, ACTOR)
    report.purchases_created += created
    return purchase


def _entry(account: Account, report: BillingReport, data: services.WalletEntryData) -> None:
    if not WalletEntry.objects.filter(account=account, idempotency_key=data.idempotency_key).exists():
        report.entries_created += services.record_wallet_entry(account, data, ACTOR)[1]


def seed_demo_billing(account: Account, window: DemoWindow) -> BillingReport:
    report = BillingReport()
    book = _Book(account, window, report)
    _opening(book)
    _after_the_quota_errors(book)
    _deepseek_pack(book)
    report.records_allocated = refresh_allocations(account).records
    report.snapshots_created = _console_balances(account, window)
    report.alert_rules_created, report.alert_emails = _alerts(account, window)
    _budgets(account, window)
    return report


@dataclass
class _Book:
    """Records the story's purchases and wallet entries, placed in the window, once each."""

    account: Account
    window: DemoWindow
    report: BillingReport

    @property
    def days(self) -> float:
        return (self.window.until - self.window.start) / timedelta(days=1)

    def at(self, fraction: float, hours: float = 0) -> datetime:
        start, until = self.window.start, self.window.until
        return start + (until - start) * fraction + timedelta(hours=hours)

    def tokens(self, per_day: float) -> int:
        return round(per_day * self.days / 10_000) * 10_000

    def purchase(self, name: str, key: str, **fields: object) -> PlanPurchase:
        data = services.PurchaseData(
            plan=name,
            currency=self.account.currency,
            idempotency_key=_key(self.window.seed, key),
            **fields,  # type: ignore[arg-type]  # the demo's fields match the model's
        )
        return _purchase(self.account, self.report, data)

    def entry(self, key: str, kind: str, amount: str, occurred_at: datetime, note: str) -> None:
        data = services.WalletEntryData(
            kind=kind,
            amount=Decimal(amount),
            currency=self.account.currency,
            occurred_at=occurred_at,
            idempotency_key=_key(self.window.seed, key),
            note=note,
        )
        _entry(self.account, self.report, data)


def _opening(book: _Book) -> None:
    """The opening top-up, a Claude trial that expires early, and the Starter plan."""
    start = book.window.start
    book.entry("opening-top-up", WalletEntryKind.TOP_UP, "60.00", start - timedelta(days=1), "Opening top-up")
    book.purchase(
        "Claude Trial",
        "trial",
        tokens=_trial_tokens(book, until=book.at(0.1)),
        price=Decimal("0"),
        effective_at=start - timedelta(days=10),
        expires_at=book.at(0.1),
        models=["claude-*"],
        priority=5,
    )
    book.purchase(
        "Starter",
        "starter",
        tokens=book.tokens(450_000),
        price=Decimal("39.00"),
        effective_at=start,
        expires_at=start + timedelta(days=max(book.days, 30)),
        models=CHAT_MODELS,
    )


def _trial_tokens(book: _Book, *, until: datetime) -> int:
    """A trial that expires with about a third left: sized on the Claude tokens used until
    it expires. Traffic follows the hour of the day and the window ends at the current hour,
    so a fixed size ran out before expiring when the window began in working hours."""
    used = UsageRecord.objects.filter(
        account=book.account, model__startswith="claude", occurred_at__gte=book.window.start, occurred_at__lt=until
    ).aggregate(tokens=Sum(F("prompt_tokens") + F("completion_tokens")))["tokens"]
    if not used:
        return book.tokens(60_000)
    return (used * 3 // 2 // 10_000 + 1) * 10_000


def _after_the_quota_errors(book: _Book) -> None:
    """A top-up, then Pro paid from the wallet, and the same Pro entered twice and voided."""
    book.entry(
        "top-up-after-incident", WalletEntryKind.TOP_UP, "150.00", book.at(0.3, 6), "Top-up after the quota errors"
    )
    pro = dict(
        tokens=book.tokens(1_500_000),
        price=Decimal("49.00"),
        effective_at=book.at(0.3, 8),
        expires_at=book.at(0.3, 8) + timedelta(days=90),
        models=["gpt-*"],
        paid_from_wallet=True,
    )
    book.purchase("Pro", "pro", **pro)
    mistake = book.purchase("Pro", "pro-entered-twice", **(pro | {"paid_from_wallet": False}))
    if mistake.voided_at is None:
        services.void_purchase(mistake, ACTOR, "Entered twice: the same Pro purchase as the one paid from the wallet")


def _deepseek_pack(book: _Book) -> None:
    """A DeepSeek pack with a higher priority that expires three days after the window."""
    book.purchase(
        "DeepSeek Pack",
        "deepseek",
        tokens=book.tokens(750_000),
        price=Decimal("25.00"),
        effective_at=book.window.start,
        expires_at=book.window.until + timedelta(days=3),
        models=["deepseek-*"],
        priority=10,
    )


def _budgets(account: Account, window: DemoWindow) -> None:
    """Two monthly budgets, sized on the last 30 days so the page has something to say: the
    search team's usage value at about its pace, and the account's paid with room to spare."""
    until = window.until.date()
    for name, scope, target, measure, headroom in (
        ("Search team", "team", "search", "usage_value", Decimal("1.0")),
        ("Whole account, paid", "account", "", "paid", Decimal("1.5")),
    ):
        if Budget.objects.filter(account=account, name=name).exists():
            continue
        probe = Budget(account=account, name=name, scope=scope, target=target, measure=measure, amount=Decimal(1))
        month = sum(spend.spend_by_day(probe, until - timedelta(days=29), until).values(), Decimal(0))
        amount = max((month * headroom).quantize(Decimal(1)), Decimal(10))
        data = BudgetData(name=name, amount=amount, scope=scope, target=target, measure=measure)
        create_budget(account, data, ACTOR, idempotency_key=f"demo-budget-{scope}-{target}")


DEMO_RECIPIENTS = "finance@acme.example, engineer@acme.example"  # the demo users: alerts go to members


def _alerts(account: Account, window: DemoWindow) -> tuple[int, int]:
    """Two rules: one that fires (the DeepSeek Pack expires within days with tokens left,
    so its email goes out through the configured backend) and one that stays quiet.
    Evaluated with the current balances, the ones the pages show (the window ends this hour);
    a second run finds the episode open and sends nothing."""
    created = 0
    for name, kind, threshold, days in (
        ("Plan expiring with tokens unused", AlertKind.PLAN_EXPIRING_UNUSED, Decimal(10), 7),
        ("Token balance below 5%", AlertKind.TOKEN_BALANCE_PERCENT, Decimal(5), None),
    ):
        _, made = AlertRule.objects.get_or_create(
            account=account,
            name=name,
            defaults={"kind": kind, "threshold": threshold, "days": days, "recipients": DEMO_RECIPIENTS},
        )
        created += made
    outcomes = alerts.evaluate_account(account)
    return created, sum(len(o.notifications) for o in outcomes)


def _console_balances(account: Account, window: DemoWindow) -> int:
    """One balance a day at noon UTC, as finance would read it off the console: the
    dashboard's wallet at that moment, less 3% more usage than the dashboard charged."""
    first = datetime.combine(window.start.date(), time(12), tzinfo=window.start.tzinfo)
    taken = set(
        BalanceSnapshot.objects.filter(account=account, source=BalanceSource.MANUAL, note=SNAPSHOT_NOTE).values_list(
            "taken_at", flat=True
        )
    )
    created = 0
    moment = first if first >= window.start else first + timedelta(days=1)
    while moment < window.until:
        if moment not in taken:
            entries = WalletEntry.objects.filter(account=account, occurred_at__lte=moment).exclude(
                kind=WalletEntryKind.USAGE_CHARGE
            )
            charged = Allocation.objects.filter(
                account=account, purchase__isnull=True, occurred_at__lte=moment, amount__isnull=False
            )
            since_start = charged.filter(occurred_at__gt=window.start)
            paid = entries.aggregate(t=Sum("amount"))["t"] or Decimal(0)
            used = charged.aggregate(t=Sum("amount"))["t"] or Decimal(0)
            drift = (since_start.aggregate(t=Sum("amount"))["t"] or Decimal(0)) * DRIFT
            services.record_manual_balance(
                account,
                balance=(paid - used - drift).quantize(CENT),
                taken_at=moment,
                actor=ACTOR,
                note=SNAPSHOT_NOTE,
            )
            created += 1
        moment += timedelta(days=1)
    return created
