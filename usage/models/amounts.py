"""The sizes of money columns and the currency-code validator every model with an amount shares."""

from __future__ import annotations

from typing import TypedDict

from django.core.validators import RegexValidator


class DecimalSize(TypedDict):
    """max_digits and decimal_places of a DecimalField, spread into it with **."""

    max_digits: int
    decimal_places: int


MONEY: DecimalSize = DecimalSize(max_digits=24, decimal_places=10)  # a price or an amount someone enters
# A record's cost and every sum of costs (rollups, allocations, the wallet's usage charges).
# A record costs less than 2·10^17 (a reported cost is below usage.schemas.MAX_RECORD_COST;
# a computed one is at most a MONEY price per million tokens × 2·10^9 tokens); 28 digits
# before the point hold 10^10 such records, so no accepted batch overflows a total.
TOTAL_MONEY = DecimalSize(max_digits=38, decimal_places=10)
CURRENCY_CODE: RegexValidator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code such as USD.")
