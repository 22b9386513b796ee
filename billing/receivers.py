"""Signal receivers of the billing app, connected in BillingConfig.ready.

New records, repricing, re-estimation and corrections make allocations stale; each
schedules a refresh, which finds the records without allocations and the charges whose
cost changed, or recomputes from the moment it was told.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing import teams
from billing.alert_defaults import create_default_rules
from billing.alert_episodes import schedule_evaluation
from billing.budgets import services as budgets
from billing.budgets.gate import schedule_publish
from billing.recompute import request_recompute, schedule_allocation
from usage.estimation.calibration import tokens_reestimated
from usage.models import Account, RepricingRun, UsageRecord
from usage.signals import key_renamed, usage_recorded, usage_revised
from usage.teams.signals import key_usage_moved, team_changed, team_renamed


@receiver(usage_recorded, sender=UsageRecord, dispatch_uid="billing.allocate_new_records")
def allocate_new_records(sender: type[UsageRecord], account: Account, **kwargs: Any) -> None:
    schedule_allocation(account.pk)


@receiver(usage_recorded, sender=UsageRecord, dispatch_uid="billing.evaluate_alerts_after_usage")
def evaluate_alerts_after_usage(sender: type[UsageRecord], account: Account, **kwargs: Any) -> None:
    # Debounced: a burst of batches schedules one evaluation, after the allocation refresh.
    schedule_evaluation(account.pk)


@receiver(usage_recorded, sender=UsageRecord, dispatch_uid="billing.check_enforced_budgets_after_usage")
def check_enforced_budgets_after_usage(sender: type[UsageRecord], account: Account, **kwargs: Any) -> None:
    # Seconds after a batch, the proxy learns whether an enforced budget ran out.
    schedule_publish(account.pk)


@receiver(post_save, sender=Account, dispatch_uid="billing.default_alert_rules")
def default_alert_rules(sender: type[Account], instance: Account, created: bool, **kwargs: Any) -> None:
    if created and settings.ALERT_DEFAULT_RULES and not kwargs.get("raw"):
        create_default_rules(instance)


@receiver(post_save, sender=RepricingRun, dispatch_uid="billing.recheck_charges_after_repricing")
def recheck_charges_after_repricing(
    sender: type[RepricingRun], instance: RepricingRun, created: bool, **kwargs: Any
) -> None:
    # The refresh waits while the repricing runs, then recomputes from the first
    # wallet charge whose record's cost changed.
    if created:
        schedule_allocation(instance.account_id)


@receiver(tokens_reestimated, sender=UsageRecord, dispatch_uid="billing.reallocate_reestimated_tokens")
def reallocate_reestimated_tokens(sender: type[UsageRecord], account: Account, since: datetime, **kwargs: Any) -> None:
    # Plans burn tokens, not money: a better estimate moves every allocation after it.
    request_recompute(account, since, "token estimates recalibrated")


@receiver(usage_revised, sender=UsageRecord, dispatch_uid="billing.reallocate_revised_usage")
def reallocate_revised_usage(
    sender: type[UsageRecord], account: Account, since: datetime, reason: str = "", **kwargs: Any
) -> None:
    # Corrected tokens or costs (failed calls no longer billed…) move every allocation after them.
    request_recompute(account, since, reason or "usage corrected")


# Teams (usage.teams): sent inside the transaction that re-attributed the records, so paid,
# team budgets and the audit trail change in that same transaction.
@receiver(team_renamed, dispatch_uid="billing.follow_team_rename")
def follow_team_rename(sender: Any, account: Account, old_names: list[str], new_name: str, **kwargs: Any) -> None:
    teams.follow_rename(account, old_names, new_name)


@receiver(key_renamed, dispatch_uid="billing.follow_key_rename")
def follow_key_rename(
    sender: Any, account: Account, old_name: str, new_name: str, user: Any = None, **kwargs: Any
) -> None:
    budgets.follow_key_rename(account, old_name, new_name, user)


@receiver(key_usage_moved, dispatch_uid="billing.follow_key_move")
def follow_key_move(sender: Any, account: Account, api_key_id: int, since: datetime | None, **kwargs: Any) -> None:
    teams.follow_key_move(account, api_key_id, since)


@receiver(team_changed, dispatch_uid="billing.audit_team_change")
def audit_team_change(
    sender: Any, account: Account, instance: Any, action: str, user: Any, before: Any, after: Any, **kwargs: Any
) -> None:
    teams.audit_change(account, instance, action, user, before, after)
