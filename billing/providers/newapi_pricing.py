"""The model list and prices of a New API console: `GET /api/pricing`.

The console publishes its pricing page's data without authentication:
`{"success": true, "data": [{"model_name", "quota_type", "model_ratio", "model_price",
"completion_ratio", "cache_ratio"?, "enable_groups", "owner_by", "billing_mode"?, …}],
"group_ratio": {group: ratio}, "usable_group": {group: description}, …}`.

Prices are ratios. A token of a `quota_type` 0 model costs `model_ratio × group_ratio`
quota (an output token `× completion_ratio` more, a cached one `× cache_ratio` of the
input), and `quota_per_unit` quota (from `/api/status`) make one US dollar, so:
input per 1M tokens = `model_ratio × group_ratio × 1,000,000 / quota_per_unit` USD.
`quota_type` 1 models cost `model_price × group_ratio` dollars per request and
`billing_mode: "tiered_expr"` ones follow an expression: neither is a per-token price,
so they get a note and no price row. The group is the console user's (`/api/user/self`,
with the account's console credentials; `default` without them); when `group_ratio`
does not say what it costs, no price is taken and the sync says why. A CNY account
gets CNY prices at the console's `usd_exchange_rate`, as its balance does.

The model list itself is `{base}/models` when the account has a relay key (`api_key`),
else the models of this list the user's group may use (`enable_groups` holds it or
"all").
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from billing.providers.base import Connection
from billing.providers.errors import BadAnswer
from billing.providers.model_list import MAX_NAME, decimal, listing_from_models
from usage.catalogue.listing import ListedModel, Listing, ProviderPrice

PER_MILLION = Decimal(1_000_000)
DEFAULT_GROUP = "default"
PER_TOKEN, PER_REQUEST = 0, 1

# (path, auth) → the whole checked answer (`{success, message, data, …}`).
Fetch = Callable[[str, bool], dict[str, Any]]


class PricingTable:
    """`/api/pricing` read for one group, in one currency."""

    def __init__(self, body: dict[str, Any], *, group: str, per_unit: Decimal, currency: str, factor: Decimal) -> None:
        items = body.get("data")
        if not isinstance(items, list):
            raise BadAnswer("/api/pricing: data is not a list")
        self.group, self.currency = group, currency
        self.items: dict[str, dict[str, Any]] = {}
        for position, item in enumerate(items):
            name = item.get("model_name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
                raise BadAnswer(f"/api/pricing: entry {position} has no usable model_name")
            self.items.setdefault(name.strip(), item)
        ratios = body.get("group_ratio")
        ratio = decimal(ratios.get(group)) if isinstance(ratios, dict) else None
        self.notes: list[str] = []
        if ratio is None:
            self.notes.append(f"/api/pricing gives no ratio for group “{group}”: its prices were not taken")
            self.unit: Decimal | None = None
        else:
            self.unit = ratio * PER_MILLION / per_unit * factor  # money per 1M tokens at model_ratio 1

    def usable(self) -> list[str]:
        """The models the group may use (every model when the console does not say)."""
        found = []
        for name, item in self.items.items():
            groups = item.get("enable_groups")
            if not isinstance(groups, list) or not groups or self.group in groups or "all" in groups:
                found.append(name)
        return found

    def model(self, name: str, listed: ListedModel | None = None) -> ListedModel:
        item = self.items.get(name)
        price, note = self._price(item) if item is not None else (None, "")
        owner = item.get("owner_by") if item is not None else None
        return ListedModel(
            name=name,
            owned_by=(listed.owned_by if listed else "") or (owner[:MAX_NAME] if isinstance(owner, str) else ""),
            created_at=listed.created_at if listed else None,
            context_length=listed.context_length if listed else None,
            price=price or (listed.price if listed else None),
            price_note=note,
        )

    def _price(self, item: dict[str, Any]) -> tuple[ProviderPrice | None, str]:
        if item.get("billing_mode") == "tiered_expr":
            return None, "tiered price (a billing expression): not a per-token price"
        if item.get("quota_type") == PER_REQUEST:
            per_request = decimal(item.get("model_price"))
            shown = f" ({per_request} USD × group ratio)" if per_request is not None else ""
            return None, f"priced per request{shown}"
        ratio, completion = decimal(item.get("model_ratio")), decimal(item.get("completion_ratio"))
        if self.unit is None or ratio is None or item.get("quota_type", PER_TOKEN) != PER_TOKEN:
            return None, ""
        input_rate = ratio * self.unit
        cache_ratio = decimal(item.get("cache_ratio"))
        return (
            ProviderPrice(
                currency=self.currency,
                input_per_mtok=input_rate,
                cached_input_per_mtok=input_rate * cache_ratio if cache_ratio is not None else None,
                output_per_mtok=input_rate * (completion if completion is not None else Decimal(1)),
            ),
            "",
        )


def newapi_listing(
    connection: Connection, fetch: Fetch, *, per_unit: Decimal, currency: str, factor: Decimal
) -> Listing:
    """The console's model list with its prices (see the module's docstring)."""
    group = DEFAULT_GROUP
    if connection.credentials.get("access_token") and connection.credentials.get("user_id"):
        user = fetch("/api/user/self", True).get("data")
        if isinstance(user, dict) and isinstance(user.get("group"), str) and user["group"]:
            group = user["group"]
    table = PricingTable(fetch("/api/pricing", False), group=group, per_unit=per_unit, currency=currency, factor=factor)
    if connection.credentials.get("api_key"):
        listed = listing_from_models(connection)
        models = tuple(table.model(m.name, m) for m in listed.models)
        return Listing(models=models, source=f"{listed.source} + /api/pricing", notes=tuple(table.notes))
    names = table.usable()
    if not names:
        raise BadAnswer(f"/api/pricing lists no model for group “{group}”: the catalogue is left as it was")
    return Listing(models=tuple(table.model(n) for n in names), source="/api/pricing", notes=tuple(table.notes))
