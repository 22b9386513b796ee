"""Token Plans (the catalogue) and their purchases: grants of tokens, voided, never edited."""

from __future__ import annotations

from fnmatch import fnmatchcase

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from usage.models import CURRENCY_CODE, MONEY, Account


class TokenBasis(models.TextChoices):
    """Which of a request's tokens a plan counts."""

    TOTAL = "total", "Prompt + completion tokens"
    UNCACHED = "uncached", "Prompt + completion, cached prompt tokens excluded"
    COMPLETION = "completion", "Completion tokens only"


def models_match(patterns: list[str] | tuple[str, ...], model: str) -> bool:
    """True when `model` is one of the names or globs; an empty list allows every model."""
    return not patterns or any(p == model or fnmatchcase(model, p) for p in patterns)


class TokenPlan(models.Model):
    """A plan TOKI sells (the catalogue): the defaults a purchase starts from."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="token_plans")
    name = models.CharField(max_length=200)
    tokens = models.BigIntegerField()
    price = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    validity_days = models.PositiveIntegerField(default=30)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model names or globs; empty = every model")
    priority = models.IntegerField(default=0, help_text="Higher burns first")
    token_basis = models.CharField(max_length=16, choices=TokenBasis.choices, default=TokenBasis.TOTAL)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account", "name"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="tokenplan_unique_name")]

    def __str__(self) -> str:
        return self.name


class PlanPurchase(models.Model):
    """A grant of tokens, valid from `effective_at` (inclusive) to `expires_at` (exclusive)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="plan_purchases")
    plan = models.ForeignKey(TokenPlan, on_delete=models.RESTRICT, related_name="purchases")
    name = models.CharField(max_length=200, help_text="The plan's name when it was bought")
    tokens = models.BigIntegerField()
    price = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    effective_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model names or globs; empty = every model")
    priority = models.IntegerField(default=0, help_text="Higher burns first")
    token_basis = models.CharField(max_length=16, choices=TokenBasis.choices, default=TokenBasis.TOTAL)
    paid_from_wallet = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64, help_text="Digest of what was submitted, to tell replays")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_via = models.CharField(max_length=200, blank=True, default="")
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    voided_via = models.CharField(max_length=200, blank=True, default="")
    void_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-effective_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="planpurchase_unique_key"),
            models.CheckConstraint(condition=Q(tokens__gt=0), name="planpurchase_tokens_positive"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("effective_at")), name="planpurchase_window"),
        ]
        indexes = [models.Index(fields=["account", "expires_at"], name="purchase_account_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.tokens:,} tokens from {self.effective_at:%Y-%m-%d})"

    def covers(self, model: str) -> bool:
        return models_match(self.allowed_models, model)
