"""Writing budgets: create (idempotent), change and delete, each with its alert rule, an
audit event, and the proxy's gate state published again once the change commits."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_noop

from billing import audit
from billing.alert_episodes import schedule_evaluation
from billing.audit import Actor
from billing.budgets import gate
from billing.models import AlertKind, AlertRule, Budget, BudgetMeasure, BudgetPeriod, BudgetScope
from billing.services import BillingError, IdempotencyConflict
from usage.models import Account, ApiKey
from usage.teams.models import Team
from usage.teams.resolve import folded

AUDITED = ("name", "scope", "target", "measure", "amount", "period", "starts_on", "ends_on", "thresholds", "enforce")
MAX_THRESHOLDS = 10
REMINDER_HOURS = 24


@dataclass(frozen=True)
class BudgetData:
    name: str
    amount: Decimal
    scope: str = BudgetScope.ACCOUNT
    target: str = ""
    measure: str = BudgetMeasure.PAID
    period: str = BudgetPeriod.MONTH
    starts_on: date | None = None
    ends_on: date | None = None
    thresholds: list[Decimal] = field(default_factory=lambda: [Decimal(50), Decimal(80), Decimal(100)])
    enforce: bool = False

    def digest(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def validate(account: Account, data: BudgetData) -> BudgetData:
    """The data as stored (target as its team or key spells itself, thresholds sorted), or a
    BillingError saying what is wrong."""
    name = data.name.strip()
    if not name:
        raise BillingError(gettext_noop("name: give the budget a name."))
    target = data.target.strip() if data.scope != BudgetScope.ACCOUNT else ""
    if data.scope != BudgetScope.ACCOUNT and not target:
        # Whole sentences (the page translates them; the API answers them in English).
        missing: dict[str, str] = {
            BudgetScope.TEAM: gettext_noop("target: say which team the budget is for."),
            BudgetScope.API_KEY: gettext_noop("target: say which key's name the budget is for."),
            BudgetScope.MODEL: gettext_noop("target: say which model or glob the budget is for."),
        }
        raise BillingError(missing.get(data.scope, "target: say which target the budget is for."))
    target = _known_target(account, data.scope, target)
    if data.amount <= 0:
        raise BillingError(gettext_noop("amount: must be more than zero."))
    if data.measure == BudgetMeasure.TOKENS and data.amount != data.amount.to_integral_value():
        raise BillingError(gettext_noop("amount: a number of tokens is a whole number."))
    thresholds = sorted({Decimal(str(t)) for t in data.thresholds})
    if not thresholds or len(thresholds) > MAX_THRESHOLDS or any(t <= 0 or t > 1000 for t in thresholds):
        raise BillingError(f"thresholds: 1 to {MAX_THRESHOLDS} percentages, each above 0 and at most 1000.")
    starts_on, ends_on = data.starts_on, data.ends_on
    if data.period == BudgetPeriod.RANGE:
        if starts_on is None or ends_on is None:
            raise BillingError(gettext_noop("starts_on, ends_on: a fixed range needs its first and last day."))
        if ends_on < starts_on:
            raise BillingError(gettext_noop("ends_on: the range ends before it starts."))
    else:
        starts_on = ends_on = None
    return BudgetData(
        name=name[:200],
        amount=data.amount,
        scope=data.scope,
        target=target[:200],
        measure=data.measure,
        period=data.period,
        starts_on=starts_on,
        ends_on=ends_on,
        thresholds=thresholds,
        enforce=data.enforce,
    )


def _known_target(account: Account, scope: str, target: str) -> str:
    """The team or key `target` names, as it spells itself. A budget's spend is matched on that
    spelling, so a misspelt target would read as nothing spent for as long as it lives: refused.
    A model budget may name models not seen yet (a glob of the next release)."""
    if scope == BudgetScope.TEAM:
        teams = {folded(name): name for name in Team.objects.filter(account=account).values_list("name", flat=True)}
        if (found := teams.get(folded(target))) is None:
            raise BillingError(gettext_noop("target: the account has no team of that name (see the Teams page)."))
        return found
    if scope == BudgetScope.API_KEY:
        names = set(ApiKey.objects.filter(account=account, name__iexact=target).values_list("name", flat=True))
        if target in names:
            return target
        if len(names) != 1:  # none, or several spellings of it: which one is meant cannot be told
            raise BillingError(gettext_noop("target: the account has no key of that name (see Keys & teams)."))
        return names.pop()
    return target


def _fields(data: BudgetData) -> dict[str, object]:
    values = asdict(data)
    values["thresholds"] = [int(t) if t == t.to_integral_value() else float(t) for t in data.thresholds]
    return values


def _after_change(account: Account) -> None:
    """Once committed: the proxy's gate, and the budget's alert rule, read the new budget."""
    transaction.on_commit(lambda: gate.publish(account), robust=True)
    schedule_evaluation(account.pk, delay=1)


def _sync_rule(budget: Budget) -> None:
    """Every budget has an alert rule whose tiers are its thresholds; it notifies the channels."""
    AlertRule.objects.update_or_create(
        budget=budget,
        defaults={
            "account": budget.account,
            "name": f"Budget {budget.name}",
            "kind": AlertKind.BUDGET,
            "threshold": min(Decimal(str(t)) for t in budget.thresholds),
        },
        create_defaults={
            "account": budget.account,
            "name": f"Budget {budget.name}",
            "kind": AlertKind.BUDGET,
            "threshold": min(Decimal(str(t)) for t in budget.thresholds),
            "cooldown_hours": REMINDER_HOURS,
        },
    )


def create_budget(
    account: Account, data: BudgetData, actor: Actor, *, idempotency_key: str = ""
) -> tuple[Budget, bool]:
    """(budget, created). The same idempotency key with the same content returns the budget
    made the first time; with other content it is an IdempotencyConflict."""
    data = validate(account, data)
    digest = data.digest()
    if idempotency_key:
        found = Budget.objects.filter(account=account, idempotency_key=idempotency_key).first()
        if found is not None:
            if found.request_hash != digest:
                raise IdempotencyConflict(f"idempotency_key {idempotency_key!r} was used for another budget.")
            return found, False
    try:
        with transaction.atomic():
            budget = Budget.objects.create(
                account=account,
                idempotency_key=idempotency_key,
                request_hash=digest,
                created_by=actor.user if getattr(actor.user, "pk", None) else None,
                created_via=actor.label[:200],
                **_fields(data),
            )
            _sync_rule(budget)
            audit.record(actor, "budget.create", budget, account=account, after=audit.snapshot(budget, AUDITED))
            _after_change(account)
    except IntegrityError:
        if idempotency_key and (
            found := Budget.objects.filter(account=account, idempotency_key=idempotency_key).first()
        ):
            if found.request_hash == digest:
                return found, False  # a concurrent replay won the race
            raise IdempotencyConflict(f"idempotency_key {idempotency_key!r} was used for another budget.") from None
        raise IdempotencyConflict(f"A budget named {data.name!r} exists already.") from None
    return budget, True


def update_budget(budget: Budget, data: BudgetData, actor: Actor) -> Budget:
    data = validate(budget.account, data)
    before = audit.snapshot(budget, AUDITED)
    for name, value in _fields(data).items():
        setattr(budget, name, value)
    try:
        with transaction.atomic():
            budget.save()
            _sync_rule(budget)
            audit.record(
                actor,
                "budget.update",
                budget,
                account=budget.account,
                before=before,
                after=audit.snapshot(budget, AUDITED),
            )
            _after_change(budget.account)
    except IntegrityError:
        raise BillingError(f"name: a budget named {data.name!r} exists already.") from None
    return budget


def delete_budget(budget: Budget, actor: Actor) -> None:
    account = budget.account
    with transaction.atomic():
        audit.record(actor, "budget.delete", budget, account=account, before=audit.snapshot(budget, AUDITED))
        budget.delete()  # its alert rule, episodes and notifications go with it
        _after_change(account)


def follow_key_rename(account: Account, old_name: str, new_name: str, user: Any = None) -> None:
    """Inside the rename's transaction: key budgets on `old_name` take `new_name`, unless
    another key of the account still has the old name (the budget is then still theirs)."""
    if ApiKey.objects.filter(account=account, name=old_name).exists():
        return
    actor = Actor.of_user(user) if getattr(user, "pk", None) else Actor.system("key rename")
    budgets = list(Budget.objects.filter(account=account, scope=BudgetScope.API_KEY, target=old_name))
    for budget in budgets:
        before = audit.snapshot(budget, AUDITED)
        budget.target = new_name
        budget.save(update_fields=["target"])
        audit.record(
            actor, "budget.update", budget, account=account, before=before, after=audit.snapshot(budget, AUDITED)
        )
    if budgets:
        _after_change(account)
