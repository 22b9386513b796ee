"""Catalogue tables: one row per model an account's provider ever listed, and one per sync."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


class CatalogueOutcome(models.TextChoices):
    RUNNING = "running", gettext_lazy("Running")
    SUCCESS = "success", gettext_lazy("Success")
    UNAVAILABLE = "unavailable", gettext_lazy("Provider unavailable (retried)")
    CREDENTIALS_REJECTED = "credentials_rejected", gettext_lazy("Credentials rejected")
    BAD_ANSWER = "bad_answer", gettext_lazy("Malformed or failed answer")
    NOT_CONFIGURED = "not_configured", gettext_lazy("Not configured")
    ERROR = "error", gettext_lazy("Internal error")


class CatalogueTrigger(models.TextChoices):
    SCHEDULE = "schedule", gettext_lazy("Schedule")
    MANUAL = "manual", gettext_lazy("Sync models now")
    COMMAND = "command", gettext_lazy("Command")


class CatalogueModel(models.Model):
    """A model the provider lists (or listed) for an account.

    `removed_at` is set when a successful listing no longer has it and cleared if it
    comes back; `first_seen_at` never moves. Prices are not kept here: the provider's
    prices are ModelPrice rows (source "provider"), so the price book applies them.
    """

    account = models.ForeignKey("usage.Account", on_delete=models.CASCADE, related_name="catalogue")
    name = models.CharField(max_length=200)
    owned_by = models.CharField(max_length=200, blank=True, default="")
    context_length = models.PositiveBigIntegerField(null=True, blank=True, help_text="Tokens, as the provider says")
    listed_created_at = models.DateTimeField(null=True, blank=True, help_text="The listing's `created`")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)
    price_note = models.CharField(
        max_length=200, blank=True, default="", help_text="Why the provider's price is not a per-token price"
    )

    class Meta:
        ordering = ["account", "name"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="cataloguemodel_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def listed(self) -> bool:
        return self.removed_at is None


class CatalogueSync(models.Model):
    """One attempt to read an account's model list (and prices). At most one runs per
    account at a time: the unfinished row is the claim."""

    account = models.ForeignKey("usage.Account", on_delete=models.CASCADE, related_name="catalogue_syncs")
    trigger = models.CharField(max_length=16, choices=CatalogueTrigger.choices, default=CatalogueTrigger.SCHEDULE)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=CatalogueOutcome.choices, default=CatalogueOutcome.RUNNING)
    error = models.TextField(blank=True, default="")
    source = models.CharField(max_length=100, blank=True, default="", help_text="What was read, e.g. /v1/models")
    # A digest of the credentials used, so that rejected ones are not retried until they change.
    credentials_digest = models.CharField(max_length=64, blank=True, default="")
    models_listed = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    returned = models.PositiveIntegerField(default=0)
    prices_added = models.PositiveIntegerField(default=0)
    prices_changed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["account", "started_at"], name="cataloguesync_account_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(finished_at__isnull=True), name="cataloguesync_one_running"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.started_at:%Y-%m-%d %H:%M} {self.outcome}"

    @property
    def ok(self) -> bool:
        return self.outcome == CatalogueOutcome.SUCCESS
