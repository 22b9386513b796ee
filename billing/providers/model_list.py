"""`GET {base}/models`: the OpenAI-compatible model list, with what providers add to it.

The list is `{"object": "list", "data": [{"id", "object": "model", "created", "owned_by", …}]}`
(New API adds `"success": true`). Besides the id, whatever is there is taken:

- a context length from the first of `context_length` (OpenRouter, Together),
  `context_window` (Groq), `max_model_len` (vLLM), `max_context_length` or
  `max_input_tokens` (LiteLLM) that is a positive integer;
- a per-token price from OpenRouter's `pricing` (`prompt`, `completion` and
  `input_cache_read`, US dollars per token, as strings).

It is read with the relay key (`api_key` credential), like any API call. An entry
without an id, an answer that is not a list, an OpenAI `error` body or an empty list
is a bad answer: the catalogue is left as it was rather than every model being
flagged removed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from billing.providers.connection import Connection
from billing.providers.errors import BadAnswer, NotConfigured
from billing.providers.http import checked, get_json
from usage.catalogue.listing import ListedModel, Listing, ProviderPrice

CONTEXT_FIELDS = ("context_length", "context_window", "max_model_len", "max_context_length", "max_input_tokens")
MAX_NAME = 200
MAX_CONTEXT = 10**12
PER_MILLION = Decimal(1_000_000)
LATEST_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z


def models_path(connection: Connection) -> str:
    return httpx.URL(connection.base_url.rstrip("/") + "/models").path


def read_models(connection: Connection) -> list[dict[str, Any]]:
    """The raw entries of `{base}/models`, each an object with a model id."""
    key = str(connection.credentials.get("api_key") or "").strip()
    if not key:
        raise NotConfigured(
            "Reading the model list needs a relay key: set the account's api_key credential "
            "(admin → Billing → Provider sync)."
        )
    url = connection.base_url.rstrip("/") + "/models"
    where = models_path(connection)
    body = get_json(connection.client, url, headers={"Authorization": f"Bearer {key}"}, exact_numbers=True)
    if isinstance(body, dict) and body.get("success") is False:
        message = str(body.get("message") or "success is false, no message")[:300]
        raise BadAnswer(f"{where} failed: {message}")
    data = checked(body, where, "list").get("data")
    if not isinstance(data, list):
        raise BadAnswer(f"{where}: data is not a list")
    if not data:
        raise BadAnswer(f"{where} listed no models: the catalogue is left as it was")
    for position, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise BadAnswer(f"{where}: entry {position} is not an object")
        name = entry.get("id")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise BadAnswer(f"{where}: entry {position} has no usable model id")
    return data


def listing_from_models(connection: Connection) -> Listing:
    entries = read_models(connection)
    return Listing(models=tuple(listed_model(entry) for entry in entries), source=models_path(connection))


def listed_model(entry: dict[str, Any]) -> ListedModel:
    owner = entry.get("owned_by")
    return ListedModel(
        name=entry["id"].strip(),
        owned_by=owner.strip()[:MAX_NAME] if isinstance(owner, str) else "",
        created_at=timestamp(entry.get("created")),
        context_length=context_length(entry),
        price=openrouter_price(entry.get("pricing")),
    )


def timestamp(value: Any) -> datetime | None:
    """Unix seconds → an aware UTC time; nothing for zero, negatives or nonsense."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or not 0 < value <= LATEST_TIMESTAMP:
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    if value != int(value) or not 0 < value <= MAX_CONTEXT:
        return None
    return int(value)


def context_length(entry: dict[str, Any]) -> int | None:
    for name in CONTEXT_FIELDS:
        found = positive_int(entry.get(name))
        if found is not None:
            return found
    return None


def decimal(value: Any) -> Decimal | None:
    """A non-negative finite number from a JSON number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def openrouter_price(pricing: Any) -> ProviderPrice | None:
    """OpenRouter's `pricing` (US dollars per token) per million tokens, when it has both rates."""
    if not isinstance(pricing, dict):
        return None
    prompt, completion = decimal(pricing.get("prompt")), decimal(pricing.get("completion"))
    if prompt is None or completion is None:
        return None
    cached = decimal(pricing.get("input_cache_read"))
    return ProviderPrice(
        currency="USD",
        input_per_mtok=prompt * PER_MILLION,
        cached_input_per_mtok=cached * PER_MILLION if cached is not None else None,
        output_per_mtok=completion * PER_MILLION,
    )
