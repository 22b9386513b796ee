"""A provider connection: where the provider is, who we are to it, and the HTTP client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from billing.providers.errors import NotConfigured


@dataclass(frozen=True)
class Connection:
    """Where the provider is, who we are to it, and the HTTP client to use (with its timeouts)."""

    base_url: str
    currency: str
    credentials: Mapping[str, str]
    client: httpx.Client

    def credential(self, name: str) -> str:
        value = str(self.credentials.get(name) or "").strip()
        if not value:
            raise NotConfigured(f"The account's credentials lack {name!r}.")
        return value
