"""Accounts (the tenants), their API keys as usage sees them, members and the dashboard's API tokens."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from toki_dashboard import crypto
from usage.models.amounts import CURRENCY_CODE


class Provider(models.TextChoices):
    MANUAL = "manual", gettext_lazy("Manual (balances recorded by finance)")
    OPENAI_BILLING = "openai_billing", gettext_lazy("OpenAI-style billing endpoints")
    NEWAPI_CONSOLE = "newapi_console", gettext_lazy("New API console")


def dashboard_time_zone() -> str:
    return settings.DASHBOARD_TIME_ZONE


class Account(models.Model):
    """A TOKI account: where its API lives, how to read its balance, and in what currency."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    base_url = models.URLField(max_length=500)
    currency = models.CharField(max_length=3, default="USD", validators=[CURRENCY_CODE])
    provider = models.CharField(max_length=32, choices=Provider.choices, default=Provider.MANUAL)
    # Fernet token of a JSON object; never shown back in full, never logged.
    credentials_encrypted = models.TextField(blank=True, default="")
    credentials_hint = models.CharField(max_length=32, blank=True, default="")
    sync_interval_minutes = models.PositiveIntegerField(default=5)
    created_at = models.DateTimeField(default=timezone.now)
    # The time zone whose days the account's DailyUsage rows hold; pages fall back to the
    # hourly rollup while it differs from DASHBOARD_TIME_ZONE (until rebuild_rollups).
    daily_rollup_zone = models.CharField(max_length=64, default=dashboard_time_zone, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_credentials(self, values: dict[str, str]) -> None:
        cleaned = {k: v for k, v in values.items() if v}
        self.credentials_encrypted = crypto.encrypt(json.dumps(cleaned)) if cleaned else ""
        secret = cleaned.get("api_key") or cleaned.get("access_token") or ""
        self.credentials_hint = f"…{secret[-4:]}" if len(secret) >= 8 else ("set" if cleaned else "")

    def get_credentials(self) -> dict[str, str]:
        if not self.credentials_encrypted:
            return {}
        return json.loads(crypto.decrypt(self.credentials_encrypted))

    @classmethod
    def default_base_url(cls) -> str:
        return settings.TOKI_BASE_URL


class ApiKey(models.Model):
    """A TOKI API key as seen in usage: by name, or by the hash and last four of its secret."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    # "name:<name>" or "sha256:<hex>": one row per key however it was first seen.
    fingerprint = models.CharField(max_length=300)
    name = models.CharField(max_length=200)
    last4 = models.CharField(max_length=4, blank=True, default="")
    team = models.CharField(max_length=100, blank=True, default="")
    provider_status = models.CharField(max_length=32, blank=True, default="")
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "fingerprint"], name="apikey_unique_fingerprint"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A dashboard user's access to an account. What they may do there is their role (a group,
    the same in every account they belong to); admins see every account without one."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account", "user"]
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account}"


class TokenScope(models.TextChoices):
    INGEST = "ingest", "Send usage (POST /api/v1/usage)"
    READ = "read", "Read usage and balances (GET endpoints)"
    BILLING = "billing", "Record purchases and wallet entries"
    PROXY = "proxy", "Call TOKI through the logging proxy (when PROXY_REQUIRE_TOKEN is on)"
    METRICS = "metrics", "Scrape Prometheus metrics (GET /metrics)"


class ApiToken(models.Model):
    """A bearer token for the dashboard's own API, scoped to one account.

    Only a SHA-256 of the token is stored: tokens are long random strings, so a
    fast hash is as safe as a slow one and keeps every API call cheap.
    """

    PREFIX = "toki_"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200)
    scopes = models.JSONField(default=list)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16, help_text="The token's first characters, to recognise it")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.is_active and scope in self.scopes
