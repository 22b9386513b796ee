"""The price book (a model's price per million tokens over a period) and the progress of repricing."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from usage.models.accounts import Account
from usage.models.amounts import MONEY


class PriceSource(models.TextChoices):
    GENAI_PRICES = "genai-prices", "genai-prices"
    PROVIDER = "provider", gettext_lazy("Provider")
    MANUAL = "manual", gettext_lazy("Manual")


class ModelPrice(models.Model):
    """Price per million tokens for a model (exact name or glob pattern) over a period."""

    account = models.ForeignKey(
        Account,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="prices",
        help_text="Empty: applies to every account.",
    )
    model_pattern = models.CharField(max_length=200, help_text="Exact model name, or a glob such as gpt-4o*")
    input_per_mtok = models.DecimalField(**MONEY)
    cached_input_per_mtok = models.DecimalField(**MONEY, null=True, blank=True)
    output_per_mtok = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=PriceSource.choices, default=PriceSource.MANUAL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model_pattern", "-effective_from"]
        indexes = [models.Index(fields=["model_pattern", "effective_from"])]

    def __str__(self) -> str:
        return f"{self.model_pattern} from {self.effective_from:%Y-%m-%d}"

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.model_pattern for ch in "*?[")


class RepricingRun(models.Model):
    """Progress of one background repricing of an account's records, so pages can say
    "Repricing N records…" while it runs. Counters move with each committed chunk."""

    # A run not updated for this long is taken as dead (worker lost) and no longer shown.
    STALE_AFTER = timedelta(minutes=15)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    total = models.BigIntegerField(help_text="Records to look at when the run started")
    done = models.BigIntegerField(default=0)
    changed = models.BigIntegerField(default=0, help_text="Records whose cost changed")
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "finished_at"], name="repricing_account_open_idx")]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.done}/{self.total}"
