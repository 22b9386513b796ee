"""The wallet ledger: append-only, a wrong entry is reversed by a new one."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from billing.models.plans import PlanPurchase
from usage.models import CURRENCY_CODE, TOTAL_MONEY, Account


class WalletEntryKind(models.TextChoices):
    TOP_UP = "top_up", gettext_lazy("Top-up")
    PLAN_PURCHASE = "plan_purchase", gettext_lazy("Plan purchase")
    USAGE_CHARGE = "usage_charge", gettext_lazy("Usage not covered by plans")
    REFUND = "refund", gettext_lazy("Refund")
    ADJUSTMENT = "adjustment", gettext_lazy("Adjustment")


# What finance (or a script) may record; the others are posted by the application.
MANUAL_WALLET_KINDS = (WalletEntryKind.TOP_UP, WalletEntryKind.REFUND, WalletEntryKind.ADJUSTMENT)


class WalletEntry(models.Model):
    """One line of the append-only wallet ledger; the balance is the sum of the amounts.

    Usage charges are posted per UTC day (`usage_day`) as the difference between the
    wallet allocations of that day and what was already posted for it, so the entries
    of a day always add up to its allocations, and late records add a line instead of
    changing one.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="wallet_entries")
    kind = models.CharField(max_length=16, choices=WalletEntryKind.choices)
    # Wide: a usage charge is a day's sum of record costs.
    amount = models.DecimalField(**TOTAL_MONEY, help_text="Signed: money in is positive, money out negative")
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    occurred_at = models.DateTimeField()
    note = models.TextField(blank=True, default="")
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    purchase = models.ForeignKey(
        PlanPurchase, on_delete=models.RESTRICT, null=True, blank=True, related_name="wallet_entries"
    )
    reverses = models.OneToOneField(
        "self", on_delete=models.RESTRICT, null=True, blank=True, related_name="reversed_by"
    )
    usage_day = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_via = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "wallet entries"
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="walletentry_unique_key"),
        ]
        indexes = [
            models.Index(fields=["account", "occurred_at"], name="wallet_account_time_idx"),
            models.Index(fields=["account", "kind", "usage_day"], name="wallet_usage_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency}"
