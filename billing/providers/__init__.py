"""Provider adapters (README "Billing and provider sync"): `openai_billing`, `newapi_console` and `manual`.

An adapter talks HTTP and parses answers into a BalanceReading and raw log rows;
`billing.sync` stores what they return. Errors are sorted by what the sync does
about them (`billing.providers.errors`).
"""

from __future__ import annotations

from billing.providers.base import Adapter, BalanceReading, Connection
from billing.providers.errors import BadAnswer, CredentialsRejected, NotConfigured, ProviderError, ProviderUnavailable
from billing.providers.manual import Manual
from billing.providers.newapi_console import NewApiConsole
from billing.providers.openai_billing import OpenAIBilling

ADAPTERS: dict[str, Adapter] = {adapter.name: adapter for adapter in (Manual(), OpenAIBilling(), NewApiConsole())}

# What each provider needs in the account's (encrypted) credentials.
REQUIRED_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "manual": (),
    "openai_billing": ("api_key",),
    "newapi_console": ("access_token", "user_id"),
}


def adapter_for(provider: str) -> Adapter:
    try:
        return ADAPTERS[provider]
    except KeyError:
        raise NotConfigured(f"No adapter for provider {provider!r}.") from None


__all__ = [
    "ADAPTERS",
    "REQUIRED_CREDENTIALS",
    "Adapter",
    "BadAnswer",
    "BalanceReading",
    "Connection",
    "CredentialsRejected",
    "NotConfigured",
    "ProviderError",
    "ProviderUnavailable",
    "adapter_for",
]
