"""How converted figures say what they were converted at."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def exchange_rate(value: Decimal | None) -> str:
    """7.1234000000 → "7.1234", 7.2 → "7.2", 100 → "100": every digit the rate has, no trailing zeros."""
    if value is None:
        return "—"
    return format(value.normalize(), "f")
