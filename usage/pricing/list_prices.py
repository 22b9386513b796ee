"""Shared list prices from the installed `genai-prices` package, kept as ModelPrice
history (source "genai-prices", every account, USD).

Which names get a price
-----------------------
TOKI sees bare, OpenAI-compatible model names and never which upstream served a
call, so a name is priced the way `genai_prices.calc_price(usage, name)` prices
it with no provider given: genai-prices routes the name to a provider by the
provider's own `model_match` (gpt-* → openai, claude* → anthropic, deepseek* →
deepseek…) and takes that provider's first model whose `match` accepts it.
Candidates are each model's id and the simple clauses of its `match`:
`equals` becomes an exact name and `starts_with` the glob `prefix*`. A candidate
is kept only when genai-prices resolves its literal text to that same model, so
the PriceBook's "exact before pattern, longer pattern first" agrees with
genai-prices' own first-match order. `contains`, `ends_with` and `regex` clauses
are not mapped.

Names genai-prices cannot route on its own (qwen-max, glm-4.5…) are kept when
the providers that list exactly that name (id or `equals`, never `a/b` router
names) all agree on its price.

Which price
-----------
The standard price in effect now (`ModelInfo.get_prices` without a request
context, so no batch, priority or flex variants). Tiered prices contribute their
base tier (the price below the first threshold). Time-of-day prices (DeepSeek's
off-peak hours) contribute the price in effect for most of the current UTC day.
Only input, cached input (`cache_read_mtok`) and output per million tokens are
kept: cache writes, audio, per-request and web-search fees are not modelled.
genai-prices matches names case-insensitively; the kept names are lower case and
the PriceBook compares case-sensitively, so `GPT-4o` stays unpriced, never mispriced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from genai_prices import data_snapshot
from genai_prices import types as gp

from usage.models import ModelPrice, PriceSource
from usage.pricing.repricing import Scope, schedule

CURRENCY = "USD"  # genai-prices lists every price in US dollars
# Where a name's first genai-prices price starts: before any record, so that
# seeding prices prices the history too.
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ListedPrice:
    model_pattern: str
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    output_per_mtok: Decimal

    def same_rates(self, row: ModelPrice) -> bool:
        return (
            self.input_per_mtok == row.input_per_mtok
            and self.cached_input_per_mtok == row.cached_input_per_mtok
            and self.output_per_mtok == row.output_per_mtok
        )


def listed_prices(at: datetime | None = None) -> dict[str, ListedPrice]:
    """Every name genai-prices prices unambiguously, with its price at `at` (default now)."""
    at = at or timezone.now()
    snapshot = data_snapshot.get_snapshot()  # honours genai-prices' own auto-update/custom data
    found: dict[str, ListedPrice] = {}
    for provider in snapshot.providers:
        for model in provider.models:
            for candidate in _candidates(model):
                if candidate not in found and _routes_to(snapshot, candidate, provider, model):
                    price = _listed(candidate, model, at)
                    if price is not None:
                        found[candidate] = price
    _drop_names_covered_by_own_prefix(found)
    for name, price in _unrouted_names(snapshot, at).items():
        found.setdefault(name, price)
    return found


def _candidates(model: gp.ModelInfo) -> Iterator[str]:
    texts = {model.id.lower()} | set(_simple_clauses(model.match))
    for text in sorted(texts):
        literal = text.removesuffix("*")
        if literal and not (GLOB_CHARS & set(literal)) and len(text) <= 200:
            yield text


def _simple_clauses(clause: object) -> Iterator[str]:
    if isinstance(clause, gp.ClauseEquals):
        yield clause.equals.lower()
    elif isinstance(clause, gp.ClauseStartsWith):
        yield clause.starts_with.lower() + "*"
    elif isinstance(clause, gp.ClauseOr):
        for inner in clause.or_:
            yield from _simple_clauses(inner)


def _equals_clauses(clause: object) -> Iterator[str]:
    if isinstance(clause, gp.ClauseEquals):
        yield clause.equals.lower()
    elif isinstance(clause, gp.ClauseOr):
        for inner in clause.or_:
            yield from _equals_clauses(inner)


def _resolve(
    snapshot: data_snapshot.DataSnapshot, name: str, provider_id: str | None = None
) -> tuple[gp.Provider, gp.ModelInfo] | None:
    try:
        return snapshot.find_provider_model(name, None, provider_id, None)
    except LookupError:
        return None


def _routes_to(
    snapshot: data_snapshot.DataSnapshot, candidate: str, provider: gp.Provider, model: gp.ModelInfo
) -> bool:
    found = _resolve(snapshot, candidate.removesuffix("*"))
    return found is not None and found[0] is provider and found[1] is model


def _drop_names_covered_by_own_prefix(found: dict[str, ListedPrice]) -> None:
    """`claude-2` next to `claude-2*` at the same price adds nothing: the glob is the
    longest pattern that can match that name, so the PriceBook picks it anyway."""
    for name in [n for n in found if not n.endswith("*")]:
        glob = found.get(name + "*")
        if glob is not None and _same(glob, found[name]):
            del found[name]


def _same(a: ListedPrice, b: ListedPrice) -> bool:
    return (a.input_per_mtok, a.cached_input_per_mtok, a.output_per_mtok) == (
        b.input_per_mtok,
        b.cached_input_per_mtok,
        b.output_per_mtok,
    )


def _unrouted_names(snapshot: data_snapshot.DataSnapshot, at: datetime) -> dict[str, ListedPrice]:
    """Bare names no provider's `model_match` claims, priced when every provider listing them agrees."""
    offers: dict[str, list[ListedPrice | None]] = {}
    for provider in snapshot.providers:
        for model in provider.models:
            for name in {model.id.lower()} | set(_equals_clauses(model.match)):
                if "/" in name or GLOB_CHARS & set(name) or len(name) > 200:
                    continue
                if _resolve(snapshot, name) is not None:
                    continue  # routed: the first pass decides
                found = _resolve(snapshot, name, provider.id)
                if found is not None and found[1] is model:
                    offers.setdefault(name, []).append(_listed(name, model, at))
    agreed = {}
    for name, prices in offers.items():
        first = prices[0]
        if first is not None and all(p is not None and _same(p, first) for p in prices):
            agreed[name] = first
    return agreed


def _listed(pattern: str, model: gp.ModelInfo, at: datetime) -> ListedPrice | None:
    price = _standard_price(model, at)
    input_rate = _base(getattr(price, "input_mtok", None))
    if input_rate is None:
        return None  # not priced per token (per request, per second…) or not priced at all
    output_rate = _base(getattr(price, "output_mtok", None))
    if output_rate is None:
        if _has_other_output_price(price):
            return None  # output billed in a unit we do not record (audio, images)
        output_rate = Decimal(0)  # embeddings and the like: no output tokens to price
    return ListedPrice(pattern, input_rate, _base(getattr(price, "cache_read_mtok", None)), output_rate)


def _standard_price(model: gp.ModelInfo, at: datetime) -> gp.ModelPrice:
    if not isinstance(model.prices, list) or not any(
        isinstance(c.constraint, gp.TimeOfDateConstraint) for c in model.prices
    ):
        return model.get_prices(at)
    # A price that depends on the hour cannot be one row: keep the one in effect for
    # most of the day, sampled each minute of the UTC day of `at` (deterministic per day).
    day = datetime.combine(at.astimezone(UTC).date(), time(), tzinfo=UTC)
    counts: Counter[int] = Counter()
    by_id: dict[int, gp.ModelPrice] = {}
    for minute in range(24 * 60):
        price = model.get_prices(day + timedelta(minutes=minute))
        counts[id(price)] += 1
        by_id[id(price)] = price
    return by_id[counts.most_common(1)[0][0]]


def _base(value: Decimal | gp.TieredPrices | None) -> Decimal | None:
    return value.base if isinstance(value, gp.TieredPrices) else value


def _has_other_output_price(price: gp.ModelPrice) -> bool:
    return any("output" in key and value is not None for key, value in vars(price).items())


@dataclass
class SyncResult:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    repricing: int = 0  # price rows whose records are being repriced in the background


@transaction.atomic
def sync_prices(*, now: datetime | None = None) -> SyncResult:
    """Bring the genai-prices rows up to date with the installed package.

    Rows of other sources are never touched; a changed price closes the open row at
    `now` and opens a new one from `now`, so history is kept and never edited. The
    records a new or changed price affects are repriced in the background after commit.
    """
    now = now or timezone.now()
    listed = listed_prices(now)
    ours = ModelPrice.objects.filter(account__isnull=True, source=PriceSource.GENAI_PRICES, currency=CURRENCY)
    # Lock our rows, so two syncs at once do not both close and reopen the same price.
    rows = list(ours.select_for_update().order_by("model_pattern", "effective_from", "id"))
    open_rows = {r.model_pattern: r for r in rows if r.effective_to is None}
    seen = {r.model_pattern for r in rows}

    result = SyncResult()
    to_close: list[ModelPrice] = []
    to_open: list[ModelPrice] = []
    scopes: list[Scope] = []
    for pattern, price in sorted(listed.items()):
        current = open_rows.get(pattern)
        if current is not None and price.same_rates(current):
            result.unchanged += 1
            continue
        # A name seen before starts its new price now; a new name's price covers the past too.
        start = now if pattern in seen else BEGINNING
        if current is not None:
            to_close.append(current)
            result.changed += 1
        else:
            result.added += 1
        to_open.append(_row(price, start, now))
        # Only records from `start` on can change price: before it the rows in effect are untouched.
        scopes.append(Scope(None, CURRENCY, pattern, start, None))

    if to_close:
        ModelPrice.objects.filter(pk__in=[r.pk for r in to_close]).update(effective_to=now)
    # bulk_create sends no post_save: the whole sync is repriced as one background job below.
    ModelPrice.objects.bulk_create(to_open, batch_size=500)
    result.repricing = len(scopes)
    schedule(scopes)
    return result


def _row(price: ListedPrice, start: datetime, now: datetime) -> ModelPrice:
    return ModelPrice(
        account=None,
        model_pattern=price.model_pattern,
        input_per_mtok=price.input_per_mtok,
        cached_input_per_mtok=price.cached_input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        currency=CURRENCY,
        effective_from=start,
        effective_to=None,
        source=PriceSource.GENAI_PRICES,
        created_at=now,
    )
