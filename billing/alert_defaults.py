"""The rules every new account starts with, told to its channels (no recipients of their own):
wallet below zero, token balance low, run-out within 7 days and a spend surge."""

from __future__ import annotations

from decimal import Decimal

from django.utils.translation import gettext_noop

from billing.models import AlertKind, AlertRule
from usage.models import Account

DEFAULT_RULES = (
    # name, kind, least severe tier (the kind adds its standard tiers beyond it). The names are
    # stored in English and shown in the reader's language while nobody renames them
    # (billing.alert_texts.rule_name).
    (gettext_noop("Wallet below zero"), AlertKind.WALLET_BELOW, Decimal(0)),
    (gettext_noop("Token balance low"), AlertKind.TOKEN_BALANCE_PERCENT, Decimal(20)),  # 20 / 10 / 0 %
    (gettext_noop("Runs out within 7 days"), AlertKind.RUNOUT_WITHIN, Decimal(7)),  # 7 / 3 / 1 days
    (gettext_noop("Spend surge"), AlertKind.SPEND_SPIKE, Decimal(3)),  # 24-hour usage value above 3× the daily median
)


def create_default_rules(account: Account) -> list[AlertRule]:
    """The standard rules the account does not have yet (by name); idempotent."""
    existing = set(AlertRule.objects.filter(account=account).values_list("name", flat=True))
    return [
        AlertRule.objects.create(account=account, name=name, kind=kind, threshold=threshold)
        for name, kind, threshold in DEFAULT_RULES
        if name not in existing
    ]
