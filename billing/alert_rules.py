"""Writes of alert rules: saved with an audit entry, as purchases and budgets are, and
evaluated soon after. The page's form validates and builds the rule; this module stores it."""

from __future__ import annotations

from django.db import transaction

from billing import audit
from billing.alert_episodes import schedule_evaluation
from billing.audit import Actor
from billing.models import AlertRule

AUDITED_FIELDS = (
    "name",
    "kind",
    "threshold",
    "tiers",
    "days",
    "error_cause",
    "recipients",
    "cooldown_hours",
    "enabled",
)


@transaction.atomic
def save_alert_rule(rule: AlertRule, actor: Actor) -> AlertRule:
    """Create or update `rule` (built, not yet saved, by the caller); the change is audited and
    the account's rules are evaluated within a second of the commit."""
    before = None
    if rule.pk is not None:
        stored = AlertRule.objects.select_for_update().get(pk=rule.pk)
        before = audit.snapshot(stored, AUDITED_FIELDS)
    rule.save()
    audit.record(
        actor,
        "alert_rule.created" if before is None else "alert_rule.changed",
        rule,
        account=rule.account,
        before=before,
        after=audit.snapshot(rule, AUDITED_FIELDS),
    )
    schedule_evaluation(rule.account_id, delay=1)
    return rule
