"""Billing's side of teams (`usage.teams`): when usage is re-attributed to other teams, what
billing keeps by team follows in the same transaction, and the change is audited.

- Paid (`billing.models.DailyPaid`, grouped by team like the usage rollups): a renamed or
  merged team's rows are added into the new name's groups; a moved key's rows from the day
  of the move are recounted from its allocations (the move may start in the middle of a day).
- Team budgets (`billing.models.Budget`, scope "team") of a renamed or merged team follow its
  new name; their spend is read from the rollups, which already have.
- Each create, rename, merge and move leaves an `billing.models.AuditEvent`.

Both paid changes run under the account's billing lock (`billing.recompute`), so that an
allocation recompute never subtracts paid from a group the records have just left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Any

from django.db.models import Q

from billing import audit
from billing.budgets.gate import schedule_publish
from billing.models import Budget, BudgetScope, DailyPaid
from billing.paid import Figures, Group, Ledger, rollup_is_current, stored_shares
from billing.recompute import _locked_state
from usage.models import Account
from usage.periods import dashboard_tz


def _named(field: str, names: Sequence[str]) -> Q:
    match = Q()
    for name in names:
        match |= Q(**{f"{field}__iexact": name})
    return match


def follow_rename(account: Account, old_names: Sequence[str], new_name: str) -> None:
    """Paid and team budgets of the teams `old_names` now belong to `new_name`."""
    Budget.objects.filter(account=account, scope=BudgetScope.TEAM).filter(_named("target", old_names)).update(
        target=new_name
    )
    _locked_state(account)
    if rollup_is_current(account):  # otherwise paid is read from the allocations, which follow the records
        ledger = Ledger(account)
        for row in DailyPaid.objects.filter(account=account).filter(_named("team", old_names)).exclude(team=new_name):
            figures = Figures(*(getattr(row, name) for name in DailyPaid.FIGURES))
            ledger.groups[Group(row.day, row.model, row.api_key_id, row.team, row.currency)].add(figures, -1)
            ledger.groups[Group(row.day, row.model, row.api_key_id, new_name, row.currency)].add(figures)
        ledger.apply()
    schedule_publish(account.pk)  # an enforced team budget blocks the keys of its new name


def follow_key_move(account: Account, api_key_id: int, since: datetime | None) -> None:
    """The key's paid from the day of `since` (all of it: None), recounted from its allocations."""
    _locked_state(account)
    if rollup_is_current(account):
        rows = DailyPaid.objects.filter(account=account, api_key_id=api_key_id)
        start = None
        if since is not None:
            day = since.astimezone(dashboard_tz()).date()
            rows = rows.filter(day__gte=day)
            start = datetime.combine(day, time(0), tzinfo=dashboard_tz())
        rows.delete()
        ledger = Ledger(account)
        ledger.add(stored_shares(account, start=start, api_key_id=api_key_id))
        ledger.apply()
    schedule_publish(account.pk)  # the gate maps keys to blocked teams


def audit_change(
    account: Account, instance: Any, action: str, user: Any, before: dict | None, after: dict | None
) -> None:
    actor = audit.Actor.of_user(user) if getattr(user, "pk", None) else audit.Actor.system()
    audit.record(actor, action, instance, account=account, before=before, after=after)
