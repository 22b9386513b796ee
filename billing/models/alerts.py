"""Alert rules, their episodes, the notifications those send and where each one is delivered.

A rule has **severity tiers** (run-out within 14 / 7 / 3 / 1 days, a budget at 50 / 80 /
100 %…). While it fires, an **episode** is open; each transition of the episode (it starts
firing, it escalates into a more severe tier, it reminds after its cooldown, it resolves)
is one **notification**, claimed with a conditional UPDATE of the episode so that several
evaluators create it once. A notification is **delivered** to the rule's own email
recipients and to every **channel** of the account (email, webhook, apprise chat URL),
one `AlertDelivery` each, with its attempts, response code and error.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext

from toki_dashboard import crypto
from usage.models import Account, DecimalSize
from usage.tenancy import member_emails

# What a rule measured (a spend, a balance, a count): as wide as the totals it can be.
MEASURED = DecimalSize(max_digits=38, decimal_places=6)


class AlertKind(models.TextChoices):
    TOKEN_BALANCE_PERCENT = "token_balance_percent", gettext_lazy("Token balance below a percentage")
    TOKEN_BALANCE_TOKENS = "token_balance_tokens", gettext_lazy("Token balance below a number of tokens")
    WALLET_BELOW = "wallet_below", gettext_lazy("Wallet below an amount")
    RUNOUT_WITHIN = "runout_within", gettext_lazy("Projected run-out within N days")
    PLAN_EXPIRING_UNUSED = (
        "plan_expiring_unused",
        gettext_lazy("A plan expiring within N days with unused tokens above X%"),
    )
    SYNC_FAILING = "sync_failing", gettext_lazy("Provider sync failing or stale")
    SPEND_SPIKE = "spend_spike", gettext_lazy("Daily spend above k× its trailing median")
    ERROR_SURGE = "error_surge", gettext_lazy("Surge of an error cause")
    BUDGET = "budget", gettext_lazy("A budget reaching its thresholds")


def parse_tiers(raw: str | list[object]) -> list[Decimal]:
    """Tiers written "14, 7, 3, 1" (or a list): decimal numbers, least severe first."""
    parts = raw if isinstance(raw, list) else str(raw).replace(";", ",").split(",")
    tiers = []
    for part in parts:
        text = str(part).strip()
        if not text:
            continue
        try:
            tiers.append(Decimal(text))
        except InvalidOperation:
            raise ValidationError(gettext("%(text)s is not a number.") % {"text": repr(text)}) from None
    return tiers


class AlertRule(models.Model):
    """A condition on an account, told to its recipients and the account's channels when it
    starts firing, escalates, stays firing past its cooldown, and resolves.

    `threshold` is the least severe tier and means, by kind: a percentage, a number of
    tokens, an amount of money in the account's currency, a number of days, a percentage
    unused (with `days`), hours without a successful sync, a multiple of the median, a
    number of errors in the last hour, or a percentage of a budget. `tiers` lists every
    tier, least severe first; empty means the threshold and the kind's standard tiers
    beyond it (`billing.alert_tiers.effective_tiers`).
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    threshold = models.DecimalField(max_digits=24, decimal_places=6)
    tiers = models.JSONField(
        default=list, blank=True, help_text="Severity tiers, least severe first; empty: the kind's standard tiers"
    )
    budget = models.OneToOneField(
        "billing.Budget", on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rule"
    )
    days = models.PositiveIntegerField(null=True, blank=True, help_text="Plan expiring within this many days")
    error_cause = models.CharField(max_length=32, blank=True, default="", help_text="For error surges")
    recipients = models.TextField(
        blank=True, default="", help_text="Email addresses, one per line or comma-separated (besides the channels)"
    )
    cooldown_hours = models.PositiveIntegerField(
        default=24, help_text="A reminder every this many hours while it keeps firing; 0: no reminder"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_value = models.DecimalField(**MEASURED, null=True, blank=True)
    last_summary = models.CharField(max_length=300, blank=True, default="")
    last_texts = models.JSONField(
        default=dict, blank=True, help_text="The last summary in every language of the site (billing.alert_texts)"
    )

    class Meta:
        ordering = ["account", "name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipient_list(self) -> list[str]:
        parts = self.recipients.replace(";", ",").replace("\n", ",").split(",")
        return [p.strip() for p in parts if p.strip()]

    def allowed_recipients(self) -> list[str]:
        """The recipients who may see the account (its members and admins): alerts go to them only."""
        allowed = member_emails(self.account)
        return [address for address in self.recipient_list if address.lower() in allowed]

    def clean(self) -> None:
        if self.account_id is None:
            return
        allowed = member_emails(self.account)
        outsiders = [address for address in self.recipient_list if address.lower() not in allowed]
        if outsiders:
            raise ValidationError(
                {
                    "recipients": ngettext(
                        "%(addresses)s is not the email of a member of %(account)s: alerts go only to people "
                        "who may see the account.",
                        "%(addresses)s are not the emails of members of %(account)s: alerts go only to people "
                        "who may see the account.",
                        len(outsiders),
                    )
                    % {"addresses": ", ".join(outsiders), "account": self.account.name}
                }
            )


class AlertEpisode(models.Model):
    """One stretch of time a rule fires, from `started_at` to `resolved_at`.

    `severity` is the tier the rule is in now (1 = least severe), `notified_severity` the
    most severe tier a notification went out for. Each notification is claimed by a
    conditional update of these fields (`notified_at` for the first, `notified_severity`
    for an escalation, `last_notified_at` for a reminder, `resolved_at` for the end), so
    two workers never send it twice; at most one episode per rule is open.
    """

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="episodes")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    value = models.DecimalField(**MEASURED, null=True, blank=True)
    summary = models.CharField(max_length=300, help_text="What the rule said when it started firing")
    details = models.JSONField(default=dict, blank=True)
    last_value = models.DecimalField(**MEASURED, null=True, blank=True)
    last_summary = models.CharField(max_length=300, blank=True, default="")
    last_details = models.JSONField(default=dict, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    severity = models.PositiveSmallIntegerField(default=1, help_text="The tier the rule is in now")
    notified_severity = models.PositiveSmallIntegerField(default=0, help_text="The most severe tier notified")
    notified_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=Q(resolved_at__isnull=True), name="alertepisode_one_open_per_rule"
            )
        ]
        indexes = [models.Index(fields=["account", "resolved_at"], name="alertepisode_open_idx")]

    def __str__(self) -> str:
        return f"{self.rule_id} from {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class NotificationKind(models.TextChoices):
    FIRING = "firing", gettext_lazy("Firing")
    ESCALATED = "escalated", gettext_lazy("Escalated")
    REMINDER = "reminder", gettext_lazy("Reminder")
    RESOLVED = "resolved", gettext_lazy("Resolved")
    TEST = "test", gettext_lazy("Test")


class AlertNotification(models.Model):
    """One transition of an episode (or a test), as it was told: what every channel receives."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, null=True, blank=True, related_name="notifications")
    episode = models.ForeignKey(
        AlertEpisode, on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    tier = models.PositiveSmallIntegerField(default=0, help_text="0: not firing (resolved, or a quiet test)")
    severity = models.CharField(max_length=16, default="ok")
    value = models.DecimalField(**MEASURED, null=True, blank=True)
    threshold = models.DecimalField(**MEASURED, null=True, blank=True)
    subject = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True, help_text="The numbers behind it, as sent")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Belt and braces behind the episode's claims: each of these happens once per tier.
            models.UniqueConstraint(
                fields=["episode", "kind", "tier"],
                condition=Q(episode__isnull=False, kind__in=["firing", "escalated", "resolved"]),
                name="alertnotification_once_per_transition",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"

    @property
    def event(self) -> str:
        """The webhook `event`: alert.firing, alert.escalated, alert.reminder, alert.resolved or test."""
        return "test" if self.kind == NotificationKind.TEST else f"alert.{self.kind}"


class ChannelKind(models.TextChoices):
    EMAIL = "email", gettext_lazy("Email")
    WEBHOOK = "webhook", gettext_lazy("Webhook")
    APPRISE = "apprise", gettext_lazy("Chat (apprise URL)")


class AlertChannel(models.Model):
    """Where every rule and budget of an account is told: an email address, a webhook
    (signed JSON POST) or a chat service by its apprise URL (Slack, Teams, Discord,
    Telegram, ntfy…). URLs and signing secrets are encrypted at rest and shown back only
    as a hint."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_channels")
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    name = models.CharField(max_length=200, blank=True, default="")
    address = models.CharField(max_length=254, blank=True, default="", help_text="Email channels: the address")
    url_encrypted = models.TextField(blank=True, default="")
    secret_encrypted = models.TextField(blank=True, default="")
    hint = models.CharField(max_length=300, blank=True, default="", help_text="What is shown of the target")
    language = models.CharField(
        max_length=10,
        blank=True,
        default="",
        help_text="The language its messages are written in (one of LANGUAGES); empty: the site's LANGUAGE_CODE",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["account", "kind", "id"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.name or f"{self.get_kind_display()} {self.hint}"

    @property
    def url(self) -> str:
        return crypto.decrypt(self.url_encrypted) if self.url_encrypted else ""

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    def set_url(self, url: str) -> None:
        self.url_encrypted = crypto.encrypt(url)
        self.hint = url_hint(url)

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""


def url_hint(url: str) -> str:
    """What may be shown of a URL that can hold secrets: its scheme and host, and the last
    four characters ("https://hooks.example.com/…x1Yz", "slack://…9f3A")."""
    scheme, _, rest = url.partition("://")
    if not rest:
        return f"…{url[-4:]}"
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1] if scheme in ("http", "https", "json", "form", "xml") else ""
    tail = url[-4:] if len(url) >= 16 else ""
    return f"{scheme}://{host}{'/' if host else ''}…{tail}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", gettext_lazy("Pending")
    SENDING = "sending", gettext_lazy("Sending")
    SENT = "sent", gettext_lazy("Sent")
    FAILED = "failed", gettext_lazy("Failed (retrying)")
    GAVE_UP = "gave_up", gettext_lazy("Failed")


class AlertDelivery(models.Model):
    """One notification to one target: the rule's email recipients (no channel) or a channel.
    Claimed (status → sending) before each attempt, so two workers never send it twice."""

    notification = models.ForeignKey(AlertNotification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        AlertChannel, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    target = models.CharField(max_length=300, help_text="Addresses, or the hint of the channel's URL")
    recipients = models.JSONField(default=list, blank=True, help_text="Email deliveries: the addresses")
    language = models.CharField(
        max_length=10, blank=True, default="", help_text="The language it is written in; empty: LANGUAGE_CODE"
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Webhooks: the last HTTP status")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alert deliveries"
        indexes = [models.Index(fields=["status", "created_at"], name="alertdelivery_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.target} ({self.status})"

    @property
    def subject(self) -> str:
        return self.notification.subject
