"""Enforcement: the proxy's gate state of an account, computed from its enforced budgets.

An enforced budget whose spend in its current period has reached its amount becomes a
block (`usage.budget_gate`) naming the budget and when it resets; the state is published to
the cache the proxy reads. It is published again after each batch of usage (debounced by
BUDGET_GATE_DELAY_SECONDS), when a budget is saved or deleted, after each allocation
refresh (paid moves then) and every minute (periods reset, blocks lapse by themselves at
`resets_at` anyway).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from billing.budgets import spend, text
from billing.models import Budget, BudgetScope
from toki_dashboard import background
from usage import budget_gate
from usage.budget_gate import Block, GateState
from usage.models import Account, ApiKey


def accounts_with_enforced_budgets() -> list[int]:
    return list(Budget.objects.filter(enforce=True).values_list("account_id", flat=True).distinct().order_by())


def compute(account: Account, *, now: datetime | None = None) -> GateState:
    now = now or timezone.now()
    whole: Block | None = None
    keys: dict[str, Block] = {}
    teams: dict[str, Block] = {}
    models: list[tuple[str, Block]] = []
    for budget in Budget.objects.filter(account=account, enforce=True).select_related("account").order_by("name"):
        found = spend.status(budget, now=now, history=0)
        if not found.exhausted or (found.resets_at is None and now >= found.window.end):
            continue  # within budget, or a fixed range that is over
        block = Block(budget.name, text.refusal_message(found), found.resets_at)
        if budget.scope == BudgetScope.ACCOUNT:
            whole = whole or block
        elif budget.scope == BudgetScope.TEAM:
            teams.setdefault(budget.target, block)
        elif budget.scope == BudgetScope.API_KEY:
            for fingerprint in ApiKey.objects.filter(account=account, name=budget.target).values_list(
                "fingerprint", flat=True
            ):
                keys.setdefault(fingerprint, block)
        else:
            models.append((budget.target, block))
    key_teams = dict(ApiKey.objects.filter(account=account, team__in=list(teams)).values_list("fingerprint", "team"))
    return GateState(account=whole, keys=keys, teams=teams, key_teams=key_teams, models=tuple(models))


def publish(account: Account, *, now: datetime | None = None) -> GateState:
    state = compute(account, now=now)
    budget_gate.publish(account.pk, state)
    return state


def schedule_publish(account_id: int, *, delay: float | None = None) -> None:
    """Publish the account's gate soon after the current transaction commits, if it has an
    enforced budget; requests within the delay share one task."""
    wait = settings.BUDGET_GATE_DELAY_SECONDS if delay is None else delay
    key = f"billing:budget-gate:{connection.settings_dict['NAME']}:{account_id}"

    def enqueue() -> None:
        if not Budget.objects.filter(account_id=account_id, enforce=True).exists():
            return
        if cache.add(key, 1, timeout=max(1, int(wait))):
            background.enqueue("billing.tasks.publish_budget_gate", account_id, countdown=wait)

    transaction.on_commit(enqueue, robust=True)
