"""The price book: which ModelPrice applies to a request, at which exchange rate, and what
the request cost in its account's currency. `valuation` is the one rule every path uses."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase

from django.db.models import Q

from usage.models import Account, CostSource, ErrorCause, ExchangeRate, ModelPrice, PriceSource, TokensSource

PER_MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("1e-10")
# What this deployment was told it pays beats a public list price: finance's own
# prices first, then what the provider reports, then genai-prices.
SOURCE_RANK: dict[str, int] = {PriceSource.MANUAL: 0, PriceSource.PROVIDER: 1, PriceSource.GENAI_PRICES: 2}


class RateTable:
    """Exchange rates into one currency: the rate in effect at a moment is the pair's latest
    `effective_from` not after it, and of several entries for that moment the last entered."""

    def __init__(self, rates: Iterable[ExchangeRate]) -> None:
        by_pair: dict[str, list[ExchangeRate]] = {}
        for rate in sorted(rates, key=lambda r: (r.effective_from, r.pk)):
            by_pair.setdefault(rate.from_currency, []).append(rate)
        self._rates = by_pair
        self._starts = {currency: [r.effective_from for r in entries] for currency, entries in by_pair.items()}

    @classmethod
    def into(cls, currency: str) -> RateTable:
        return cls(ExchangeRate.objects.filter(to_currency=currency))

    @property
    def currencies(self) -> set[str]:
        """The currencies this table converts from."""
        return set(self._rates)

    def at(self, from_currency: str, moment: datetime) -> ExchangeRate | None:
        starts = self._starts.get(from_currency)
        if not starts:
            return None
        index = bisect_right(starts, moment)
        return self._rates[from_currency][index - 1] if index else None


@dataclass(frozen=True, slots=True)
class Valuation:
    """What a record cost in its account's currency, and what that figure came from."""

    cost: Decimal | None
    cost_source: str = ""
    price: ModelPrice | None = None
    rate: ExchangeRate | None = None

    @property
    def price_id(self) -> int | None:
        return self.price.pk if self.price is not None else None

    @property
    def rate_id(self) -> int | None:
        return self.rate.pk if self.rate is not None else None


UNPRICED = Valuation(None)
# A call that was not served: nothing to bill, and known to be nothing (not unpriced).
NOTHING_SERVED = Valuation(Decimal(0), CostSource.COMPUTED)


class PriceBook:
    """Prices for one account, loaded once per batch.

    A price in the account's currency comes first; else a price in another currency,
    converted at the exchange rate in effect at the request's time (no rate: that price
    cannot be used). Then the account's own prices before shared ones; within a scope,
    manual prices before provider-reported ones before genai-prices (so a manual
    `gpt-4o*` beats genai-prices' exact `gpt-4o`); then exact names before patterns,
    longer patterns before shorter, then the latest `effective_from` that is not after
    the request.
    """

    def __init__(self, prices: list[ModelPrice], currency: str = "", rates: RateTable | None = None) -> None:
        self.currency = currency
        self.rates = rates or RateTable([])

        def rank(p: ModelPrice) -> tuple[int, int, int, int, int, float]:
            return (
                0 if not currency or p.currency == currency else 1,
                0 if p.account_id else 1,
                SOURCE_RANK.get(p.source, len(SOURCE_RANK)),
                1 if p.is_pattern else 0,
                -len(p.model_pattern),
                -p.effective_from.timestamp(),
            )

        self._prices = sorted(prices, key=rank)
        self._cache: dict[str, list[ModelPrice]] = {}

    @classmethod
    def for_account(cls, account: Account, models: Iterable[str] | None = None) -> PriceBook:
        """The account's book; given `models`, only the rows that can match them (their exact
        names and every pattern), which is all a batch of those models can use."""
        rates = RateTable.into(account.currency)
        currencies = {account.currency} | rates.currencies
        prices = ModelPrice.objects.filter(Q(account__isnull=True) | Q(account=account), currency__in=currencies)
        if models is not None:
            patterns = Q(model_pattern__contains="*") | Q(model_pattern__contains="?") | Q(model_pattern__contains="[")
            prices = prices.filter(Q(model_pattern__in=set(models)) | patterns)
        return cls(list(prices), account.currency, rates)

    def _candidates(self, model: str) -> list[ModelPrice]:
        found = self._cache.get(model)
        if found is None:
            found = [
                p
                for p in self._prices
                if p.model_pattern == model or (p.is_pattern and fnmatchcase(model, p.model_pattern))
            ]
            self._cache[model] = found
        return found

    def lookup(self, model: str, at: datetime) -> tuple[ModelPrice, ExchangeRate | None] | None:
        """The price that applies and, for a price in another currency, the rate it converts at."""
        for price in self._candidates(model):
            if price.effective_from > at or (price.effective_to is not None and at >= price.effective_to):
                continue
            if not self.currency or price.currency == self.currency:
                return price, None
            rate = self.rates.at(price.currency, at)
            if rate is not None:
                return price, rate
        return None

    def find(self, model: str, at: datetime) -> ModelPrice | None:
        found = self.lookup(model, at)
        return found[0] if found is not None else None

    def value(
        self, model: str, at: datetime, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int
    ) -> Valuation:
        found = self.lookup(model, at)
        if found is None:
            return UNPRICED
        price, rate = found
        cost = _raw_cost(price, prompt_tokens=prompt_tokens, cached_tokens=cached_tokens, completion=completion_tokens)
        if rate is not None:
            cost *= rate.rate
        return Valuation(cost.quantize(COST_QUANTUM), CostSource.COMPUTED, price, rate)


def was_served(status_code: int, error_cause: str) -> bool:
    """A call counts as served unless it failed: an error status, or an error in its answer."""
    return status_code < 400 and error_cause == ErrorCause.NONE


def valuation(
    book: PriceBook,
    *,
    model: str,
    at: datetime,
    served: bool,
    tokens_source: str,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
    reported_cost: Decimal | None,
) -> Valuation:
    """The cost of a record, as ingestion and every re-pricing set it.

    Only what was served is billed: a failed call without reported usage costs zero (and is
    priced, not unpriced). A provider-reported cost wins over the price book otherwise; a
    served call without any token count has nothing to price and stays unpriced.
    """
    if not served and tokens_source != TokensSource.REPORTED:
        return NOTHING_SERVED
    if reported_cost is not None:
        return Valuation(reported_cost, CostSource.REPORTED)
    if tokens_source == TokensSource.NONE:
        return UNPRICED
    return book.value(
        model, at, prompt_tokens=prompt_tokens, cached_tokens=cached_tokens, completion_tokens=completion_tokens
    )


def _raw_cost(price: ModelPrice, *, prompt_tokens: int, cached_tokens: int, completion: int) -> Decimal:
    cached_rate = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    uncached = max(prompt_tokens - cached_tokens, 0)
    return (uncached * price.input_per_mtok + cached_tokens * cached_rate + completion * price.output_per_mtok) / (
        PER_MILLION
    )


def cost_of(price: ModelPrice, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
    """Cached tokens at the cached rate, the rest of the prompt at the input rate (in the price's currency)."""
    cost = _raw_cost(price, prompt_tokens=prompt_tokens, cached_tokens=cached_tokens, completion=completion_tokens)
    return cost.quantize(COST_QUANTUM)
