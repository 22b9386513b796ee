"""The price book: which ModelPrice applies to a request, and what the request cost."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase

from django.db.models import Q

from usage.models import Account, ModelPrice, PriceSource

PER_MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("1e-10")
# What this deployment was told it pays beats a public list price: finance's own
# prices first, then what the provider reports, then genai-prices.
SOURCE_RANK = {PriceSource.MANUAL: 0, PriceSource.PROVIDER: 1, PriceSource.GENAI_PRICES: 2}


class PriceBook:
    """Prices for one account in its currency, loaded once per batch.

    Precedence: the account's own prices before shared ones; within a scope,
    manual prices before provider-reported ones before genai-prices (so a manual
    `gpt-4o*` beats genai-prices' exact `gpt-4o`); then exact names before
    patterns, longer patterns before shorter, then the latest `effective_from`
    that is not after the request.
    """

    def __init__(self, prices: list[ModelPrice]) -> None:
        def rank(p: ModelPrice) -> tuple[int, int, int, int, float]:
            return (
                0 if p.account_id else 1,
                SOURCE_RANK.get(p.source, len(SOURCE_RANK)),
                1 if p.is_pattern else 0,
                -len(p.model_pattern),
                -p.effective_from.timestamp(),
            )

        self._prices = sorted(prices, key=rank)
        self._exact: dict[str, list[ModelPrice]] = {}
        for price in self._prices:
            if not price.is_pattern:
                self._exact.setdefault(price.model_pattern, []).append(price)
        self._cache: dict[str, list[ModelPrice]] = {}

    @classmethod
    def for_account(cls, account: Account, models: Iterable[str] | None = None) -> PriceBook:
        """The account's book; given `models`, only the rows that can match them (their exact
        names and every pattern), which is all a batch of those models can use."""
        prices = ModelPrice.objects.filter(Q(account__isnull=True) | Q(account=account), currency=account.currency)
        if models is not None:
            patterns = Q(model_pattern__contains="*") | Q(model_pattern__contains="?") | Q(model_pattern__contains="[")
            prices = prices.filter(Q(model_pattern__in=set(models)) | patterns)
        return cls(list(prices))

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

    def find(self, model: str, at: datetime) -> ModelPrice | None:
        for price in self._candidates(model):
            if price.effective_from <= at and (price.effective_to is None or at < price.effective_to):
                return price
        return None


def cost_of(price: ModelPrice, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
    """Cached tokens at the cached rate, the rest of the prompt at the input rate."""
    cached_rate = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    uncached = max(prompt_tokens - cached_tokens, 0)
    total = (
        uncached * price.input_per_mtok + cached_tokens * cached_rate + completion_tokens * price.output_per_mtok
    ) / PER_MILLION
    return total.quantize(COST_QUANTUM)
