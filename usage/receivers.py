"""Signal receivers of the usage app, connected in UsageConfig.ready.

However a price or an exchange rate is added, edited or deleted (admin, a dashboard
page, a command, the shell), the records it can affect are repriced in the background
after commit. Bulk writes send no signals: `usage.pricing.list_prices.sync_prices` schedules its own
repricing.

Ingestion keeps PostgreSQL's statistics up with the accounts that grow (usage.statistics).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Min
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from usage import statistics
from usage.models import ExchangeRate, ModelPrice, UsageRecord
from usage.pricing.repricing import Scope, schedule
from usage.signals import usage_recorded

# Everything that decides which records a price applies to, and what they cost.
PRICING_FIELDS = (
    "account_id",
    "model_pattern",
    "currency",
    "effective_from",
    "effective_to",
    "input_per_mtok",
    "cached_input_per_mtok",
    "output_per_mtok",
    "source",
)


def _pricing(price: ModelPrice) -> tuple[Any, ...]:
    return tuple(getattr(price, name) for name in PRICING_FIELDS)


@receiver(pre_save, sender=ModelPrice, dispatch_uid="usage.price_before_save")
def remember_price_before_save(sender: type[ModelPrice], instance: ModelPrice, raw: bool, **kwargs: Any) -> None:
    # The old row is needed after the save: an edit moves records out of the old
    # pattern and window as well as into the new ones.
    previous = None
    if not raw and instance.pk is not None:
        previous = ModelPrice.objects.filter(pk=instance.pk).first()
    instance._price_before_save = previous  # type: ignore[attr-defined]  # remembered on the instance between pre_save and post_save


@receiver(post_save, sender=ModelPrice, dispatch_uid="usage.reprice_after_price_save")
def reprice_after_price_save(sender: type[ModelPrice], instance: ModelPrice, raw: bool, **kwargs: Any) -> None:
    if raw:
        return  # fixtures load prices and records together, already consistent
    previous: ModelPrice | None = getattr(instance, "_price_before_save", None)
    if previous is not None and _pricing(previous) == _pricing(instance):
        return  # saved without a change that could move a cost
    schedule([Scope.of(instance)] + ([Scope.of(previous)] if previous is not None else []))


@receiver(post_delete, sender=ModelPrice, dispatch_uid="usage.reprice_after_price_delete")
def reprice_after_price_delete(sender: type[ModelPrice], instance: ModelPrice, **kwargs: Any) -> None:
    # Records that used it lost their price link (SET_NULL) but kept its cost until then.
    schedule([Scope.of(instance)])


# --- Exchange rates -------------------------------------------------------------------------------


def _rate_scope(rate: ExchangeRate) -> Scope:
    """The records a rate can value: its target currency's accounts, until the pair's next rate."""
    later = ExchangeRate.objects.filter(
        from_currency=rate.from_currency, to_currency=rate.to_currency, effective_from__gt=rate.effective_from
    )
    return Scope.of_rate(rate, later.aggregate(next=Min("effective_from"))["next"])


@receiver(post_save, sender=ExchangeRate, dispatch_uid="usage.revalue_after_rate_save")
def revalue_after_rate_save(sender: type[ExchangeRate], instance: ExchangeRate, raw: bool, **kwargs: Any) -> None:
    if not raw:
        schedule([_rate_scope(instance)])


@receiver(post_delete, sender=ExchangeRate, dispatch_uid="usage.revalue_after_rate_delete")
def revalue_after_rate_delete(sender: type[ExchangeRate], instance: ExchangeRate, **kwargs: Any) -> None:
    # Its records lost their rate link (SET_NULL) but kept their cost until they are re-valued.
    schedule([_rate_scope(instance)])


@receiver(usage_recorded, sender=UsageRecord, dispatch_uid="usage.refresh_statistics_after_usage")
def refresh_statistics_after_usage(sender: type[UsageRecord], **kwargs: Any) -> None:
    statistics.schedule_refresh()
