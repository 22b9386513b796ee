"""Budgets: how much an account, a team, an API key or some models may spend in a period.

A budget counts one **measure** (money paid, usage value, or tokens; see README "Usage value
and paid") over a **period** of days of DASHBOARD_TIME_ZONE: each day, each week (from
Monday), each calendar month, or one fixed range of days. Its **thresholds** (percent of the
amount) are the tiers of the alert rule every budget has (`AlertRule.budget`); an
**enforced** budget, once exhausted, makes the logging proxy refuse its calls until the
period resets or the amount is raised (`billing.budgets.gate`).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy

from usage.models import TOTAL_MONEY, Account

DEFAULT_THRESHOLDS = [50, 80, 100]
# A money amount or a number of tokens.


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class BudgetScope(models.TextChoices):
    ACCOUNT = "account", gettext_lazy("The whole account")
    TEAM = "team", gettext_lazy("A team")
    API_KEY = "api_key", gettext_lazy("An API key")
    MODEL = "model", gettext_lazy("Models (name or glob)")


class BudgetMeasure(models.TextChoices):
    PAID = "paid", gettext_lazy("Paid")
    USAGE_VALUE = "usage_value", gettext_lazy("Usage value")
    TOKENS = "tokens", gettext_lazy("Tokens")


class BudgetPeriod(models.TextChoices):
    DAY = "day", gettext_lazy("Each day")
    WEEK = "week", gettext_lazy("Each week")
    MONTH = "month", gettext_lazy("Each month")
    RANGE = "range", gettext_lazy("A fixed range of days")


class Budget(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=16, choices=BudgetScope.choices, default=BudgetScope.ACCOUNT)
    target = models.CharField(
        max_length=200, blank=True, default="", help_text="The team, the key's name, or a model name or glob"
    )
    measure = models.CharField(max_length=16, choices=BudgetMeasure.choices, default=BudgetMeasure.PAID)
    amount = models.DecimalField(**TOTAL_MONEY, help_text="Money in the account's currency, or tokens")
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    starts_on = models.DateField(null=True, blank=True, help_text="A fixed range: its first day")
    ends_on = models.DateField(null=True, blank=True, help_text="A fixed range: its last day (inclusive)")
    thresholds = models.JSONField(default=default_thresholds, help_text="Percentages of the amount, e.g. [50, 80, 100]")
    enforce = models.BooleanField(
        default=False, help_text="Once exhausted, the proxy refuses its calls (HTTP 429) until it resets"
    )
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    request_hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_via = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["account", "name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="budget_unique_name"),
            models.UniqueConstraint(
                fields=["account", "idempotency_key"], condition=~Q(idempotency_key=""), name="budget_unique_key"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="budget_amount_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def threshold_values(self) -> list[Decimal]:
        return sorted(Decimal(str(t)) for t in self.thresholds) or [Decimal(t) for t in DEFAULT_THRESHOLDS]

    @property
    def is_money(self) -> bool:
        return self.measure != BudgetMeasure.TOKENS

    @property
    def unit(self) -> str:
        return self.account.currency if self.is_money else "tokens"
