"""What the recompute derives from usage and purchases: allocations, expiries, the paid rollup,
and the per-account bookkeeping and requests that drive it.

All of it is rewritten by `billing.recompute.refresh_allocations` from a checkpoint.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models.plans import PlanPurchase
from usage.models import CURRENCY_CODE, TOTAL_MONEY, Account, UsageRecord


class Allocation(models.Model):
    """Where a record's tokens went: to a purchase (`purchase` set) or to the wallet.

    Every allocated record has at least one row, so records without any are the ones
    still to allocate. Every row carries the record's cost when it was allocated
    (`record_cost`, None when it had no price); wallet rows carry the money charged,
    computed from it (`amount`, None when the record had no price).
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    # No database constraint: the records are partitioned by month on PostgreSQL (a foreign
    # key into them would need a unique key on (id, occurred_at)), and allocations outlive the
    # raw partitions retention drops (RAW_RETENTION_MONTHS). The recompute writes allocations
    # only for records it has just read, under the account's lock, so the check adds nothing.
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    occurred_at = models.DateTimeField()
    purchase = models.ForeignKey(
        PlanPurchase, on_delete=models.RESTRICT, null=True, blank=True, related_name="allocations"
    )
    tokens = models.BigIntegerField()
    amount = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)
    # What the record looked like when it was allocated, to notice when repricing or
    # re-estimation changes it: its prompt + completion tokens, and its cost.
    record_tokens = models.BigIntegerField(default=0)
    record_cost = models.DecimalField(**TOTAL_MONEY, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "occurred_at"], name="allocation_account_time_idx"),
            models.Index(fields=["purchase", "occurred_at"], name="allocation_purchase_time_idx"),
        ]

    def __str__(self) -> str:
        target = f"purchase {self.purchase_id}" if self.purchase_id else "wallet"
        return f"record {self.record_id} → {target}: {self.tokens} tokens"


class PlanExpiry(models.Model):
    """Tokens of a purchase left unused when it expired (zero when it was used up)."""

    purchase = models.OneToOneField(PlanPurchase, on_delete=models.CASCADE, related_name="expiry")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    tokens = models.BigIntegerField()
    expired_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "plan expiries"

    def __str__(self) -> str:
        return f"{self.tokens:,} tokens expired at {self.expired_at:%Y-%m-%d %H:%M}"


class BillingState(models.Model):
    """Per-account allocation bookkeeping; its row is the lock that serialises recomputes."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="billing_state")
    # Records with an id up to here are known to be allocated; only later ids are scanned.
    settled_record_id = models.BigIntegerField(default=0)
    # The highest id seen at `candidate_at`; it becomes settled once no transaction that
    # could still insert a lower id can be open.
    candidate_record_id = models.BigIntegerField(default=0)
    candidate_at = models.DateTimeField(null=True, blank=True)
    costs_checked_at = models.DateTimeField(null=True, blank=True)
    last_allocated_at = models.DateTimeField(null=True, blank=True)
    last_checkpoint = models.DateTimeField(null=True, blank=True)
    drift_threshold_amount = models.DecimalField(max_digits=24, decimal_places=10, default=1)
    drift_threshold_percent = models.DecimalField(max_digits=6, decimal_places=2, default=5)
    # The time zone whose days the account's DailyPaid rows hold ("" before the first build):
    # while it differs from DASHBOARD_TIME_ZONE, paid is read from the allocations instead.
    paid_rollup_zone = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"billing state of {self.account_id}"


class DailyPaid(models.Model):
    """What was paid for usage per (account, day in DASHBOARD_TIME_ZONE, model, key, team,
    currency): plan-covered tokens at each purchase's effective rate (price ÷ tokens granted)
    and wallet charges. Derived from the allocations and rewritten with them by the recompute
    (`billing.paid`), so pages read paid without scanning allocations."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey("usage.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    team = models.CharField(max_length=100, blank=True, default="")
    currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    requests = models.BigIntegerField(default=0, help_text="Records allocated (counted in the account's currency)")
    plan_tokens = models.BigIntegerField(default=0)
    plan_paid = models.DecimalField(**TOTAL_MONEY, default=0)
    wallet_paid = models.DecimalField(**TOTAL_MONEY, default=0)
    # Of plan_paid: tokens of requests without a usage value (unpriced), so savings compare like with like.
    unpriced_paid = models.DecimalField(**TOTAL_MONEY, default=0)
    # Requests charged to the wallet without a price: what they cost the wallet is not known.
    unknown_requests = models.BigIntegerField(default=0)

    FIGURES = ("requests", "plan_tokens", "plan_paid", "wallet_paid", "unpriced_paid", "unknown_requests")

    class Meta:
        verbose_name_plural = "daily paid"
        constraints = [
            models.UniqueConstraint(
                "account", "day", "model", Coalesce("api_key", 0), "team", "currency", name="dailypaid_unique_group"
            ),
        ]
        indexes = [models.Index(fields=["account", "day"], name="dailypaid_account_day_idx")]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.model} {self.plan_paid + self.wallet_paid} {self.currency}"


class RecomputeRequest(models.Model):
    """Allocations from `from_time` on must be recomputed (a purchase was added or voided…)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    from_time = models.DateTimeField()
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"from {self.from_time:%Y-%m-%d %H:%M}: {self.reason}"
