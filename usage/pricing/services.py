"""Writes to the price book and the exchange rates, as people enter them (Settings, admin, API).
Repricing follows in the background, from the models' signals (usage.receivers)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from usage.models import Account, ExchangeRate, ModelPrice, PriceSource


def manual_price_history(*, account: Account | None, model_pattern: str, currency: str) -> QuerySet[ModelPrice]:
    """The prices people entered for one model (account-wide or every account) and currency."""
    return ModelPrice.objects.filter(
        account=account, model_pattern=model_pattern, currency=currency, source=PriceSource.MANUAL
    )


@transaction.atomic
def add_manual_price(
    *,
    account: Account | None,
    model_pattern: str,
    currency: str,
    input_per_mtok: Decimal,
    cached_input_per_mtok: Decimal | None,
    output_per_mtok: Decimal,
    effective_from: datetime,
) -> ModelPrice:
    """Insert a price into its model's manual history: the row in effect at its start ends there,
    and it runs until that row's old end or the next row's start. The price book's signal
    receivers reprice the affected records in the background once this commits."""
    rows = list(
        manual_price_history(account=account, model_pattern=model_pattern, currency=currency)
        .select_for_update()
        .order_by("effective_from", "pk")
    )
    current = next(
        (
            r
            for r in reversed(rows)
            if r.effective_from < effective_from and (r.effective_to is None or r.effective_to > effective_from)
        ),
        None,
    )
    following = next((r for r in rows if r.effective_from > effective_from), None)
    ends = [e for e in (current.effective_to if current else None, following and following.effective_from) if e]
    price = ModelPrice(
        account=account,
        model_pattern=model_pattern,
        currency=currency,
        input_per_mtok=input_per_mtok,
        cached_input_per_mtok=cached_input_per_mtok,
        output_per_mtok=output_per_mtok,
        effective_from=effective_from,
        effective_to=min(ends) if ends else None,
        source=PriceSource.MANUAL,
    )
    if current is not None:
        current.effective_to = effective_from
        current.save(update_fields=["effective_to"])  # post_save reprices its old window
    price.save()  # post_save reprices the new window after commit
    return price


def set_exchange_rate(
    *,
    from_currency: str,
    to_currency: str,
    rate: Decimal,
    effective_from: datetime,
    source: str,
    entered_by: Any = None,
    note: str = "",
) -> ExchangeRate:
    """Enter a rate: 1 `from_currency` = `rate` `to_currency` from `effective_from` until the
    pair's next rate. An entry for a moment that already has one wins over it (the earlier
    entry stays, as history). Raises ValidationError naming the field at fault.

    The records of accounts kept in `to_currency` that the rate can value are re-valued in
    the background once this commits (usage.receivers).
    """
    entry = ExchangeRate(
        from_currency=from_currency.strip().upper(),
        to_currency=to_currency.strip().upper(),
        rate=rate,
        effective_from=effective_from,
        source=source,
        entered_by=entered_by,
        note=note.strip()[:200],
    )
    entry.full_clean()
    entry.save()
    return entry
