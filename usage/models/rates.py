"""Exchange rates: how a price in one currency becomes a cost in an account's currency."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy

from usage.models.amounts import CURRENCY_CODE, MONEY


class RateSource(models.TextChoices):
    DASHBOARD = "dashboard", gettext_lazy("Dashboard")
    ADMIN = "admin", gettext_lazy("Admin")
    COMMAND = "command", "manage.py set_exchange_rate"


class ExchangeRate(models.Model):
    """1 `from_currency` = `rate` `to_currency`, from `effective_from` until the pair's next rate.

    Entries are never edited: a correction is a new entry for the same moment, and the
    latest entered wins. The rows are therefore also the audit of who entered what.
    """

    from_currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    to_currency = models.CharField(max_length=3, validators=[CURRENCY_CODE])
    rate = models.DecimalField(**MONEY, help_text="Units of the target currency per unit of the source currency")
    effective_from = models.DateTimeField()
    source = models.CharField(max_length=16, choices=RateSource.choices, default=RateSource.ADMIN)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    entered_at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["from_currency", "to_currency", "-effective_from", "-id"]
        indexes = [models.Index(fields=["to_currency", "from_currency", "effective_from"], name="rate_pair_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchangerate_positive"),
            models.CheckConstraint(condition=~Q(from_currency=F("to_currency")), name="exchangerate_two_currencies"),
        ]

    def __str__(self) -> str:
        rate = f"1 {self.from_currency} = {self.rate.normalize():f} {self.to_currency}"
        return f"{rate} from {self.effective_from:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.from_currency and self.from_currency == self.to_currency:
            raise ValidationError({"to_currency": "A rate converts between two different currencies."})
        if self.rate is not None and self.rate <= 0:
            raise ValidationError({"rate": "A rate is a positive number."})
        if self.effective_from is not None and timezone.is_naive(self.effective_from):
            raise ValidationError({"effective_from": "Give the moment with its time zone (e.g. …T00:00:00Z)."})

    @property
    def pair(self) -> tuple[str, str]:
        return self.from_currency, self.to_currency
