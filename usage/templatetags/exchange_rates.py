"""How converted figures say what they were converted at."""

from __future__ import annotations

from decimal import Decimal

from django import template

from usage.exchange import AppliedRate, conversion_note, rate_text

register = template.Library()


@register.filter
def exchange_rate(value: Decimal | None) -> str:
    """7.1234000000 → "7.1234", 7.2 → "7.2", 100 → "100": every digit the rate has, no trailing zeros."""
    if value is None:
        return "—"
    return rate_text(value)


@register.filter
def converted_at(rates: list[AppliedRate] | None) -> str:
    """The note beside a converted figure (usage.exchange.conversion_note), the same words everywhere."""
    return conversion_note(list(rates or []))
