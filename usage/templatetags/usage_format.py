"""Number formatting for the usage pages: money, ratios and change against the previous period."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.utils.html import format_html
from django.utils.numberformat import format as number_format
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

register = template.Library()


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _grouped(value: Decimal, places: int) -> str:
    # number_format cuts surplus digits off; round first, half up, as people expect.
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return number_format(rounded, ".", decimal_pos=places, grouping=3, thousand_sep=",", force_grouping=True)


@register.filter
def money(value: object) -> str:
    """1234.5 → "1,234.50"; money stays Decimal end to end and rounds half up, like an invoice."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    return _grouped(amount, 2)


@register.filter
def magnitude(value: object) -> Decimal | None:
    """|x|: a figure whose sign the words beside it already say ("… more than …")."""
    number = _decimal(value)
    return None if number is None else abs(number)


@register.filter
def percent(ratio: object, places: int = 1) -> str:
    """0.1234 → "12.3%"."""
    value = _decimal(ratio)
    if value is None:
        return "—"
    return f"{_grouped(value * 100, int(places))}%"


@register.filter
def number(value: object, places: int = 0) -> str:
    """1234.56 → "1,235" (or "1,234.6" with places=1); "—" for nothing."""
    amount = _decimal(value)
    if amount is None:
        return "—"
    return _grouped(amount, int(places))


@register.filter
def share_of(part: object, whole: object) -> float:
    """The fraction `part / whole`, 0 when the whole is zero (an empty period has no shares)."""
    numerator, denominator = _decimal(part), _decimal(whole)
    if numerator is None or not denominator:
        return 0.0
    return float(numerator / denominator)


def relative_change(current: object, previous: object) -> Decimal | None:
    """(current − previous) / previous, or None when there is nothing to compare with."""
    now, before = _decimal(current), _decimal(previous)
    if now is None or not before:
        return None
    return (now - before) / before


# How large a change is, relative to the previous period: below 10% small, from 50% large.
MEDIUM_CHANGE = Decimal("0.10")
LARGE_CHANGE = Decimal("0.50")


def change_size(change: Decimal) -> str:
    size = abs(change)
    return "large" if size >= LARGE_CHANGE else "medium" if size >= MEDIUM_CHANGE else "small"


def change_tone(direction: str, size: str, kind: str) -> str:
    """Money and errors going up is bad news and down good news; a change of volume is
    neither, but one that is not small is worth seeing. Small changes stay neutral."""
    if size == "small" or direction == "flat":
        return "neutral"
    if kind in ("money", "errors"):
        return "bad" if direction == "up" else "good"
    return "notable"


@register.simple_tag
def change_badge(current: object, previous: object, *, kind: str = "volume") -> SafeString | str:
    """A "+12.3%" / "-4.0%" badge against the previous period, coloured by direction and size
    (`kind`: "money", "errors" or "volume"); nothing when the previous period had nothing."""
    change = relative_change(current, previous)
    if change is None:
        return ""
    points = change * 100
    places = 1 if abs(points) < 100 else 0  # "+1,520%" needs no decimal
    shown = points.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = _grouped(abs(shown), places)
    sign, direction = ("+", "up") if shown > 0 else ("-", "down") if shown < 0 else ("", "flat")
    size = change_size(change)
    titles = {
        "up": _("Up %(change)s%% vs the period compared with"),
        "down": _("Down %(change)s%% vs the period compared with"),
        "flat": _("Flat %(change)s%% vs the period compared with"),
    }
    return format_html(
        '<span class="change change--{} change--{} change--{}" title="{}">{}{}%</span>',
        direction,
        size,
        change_tone(direction, size, kind),
        titles[direction] % {"change": text},
        sign,
        text,
    )


@register.filter
def duration_words(value: timedelta | None) -> str:
    """A duration as people say it: "15 minutes", "1 hour", "2 hours 30 minutes"."""
    if value is None:
        return ""
    minutes = round(value.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if minutes or not parts:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
