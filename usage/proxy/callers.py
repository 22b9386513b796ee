"""The optional second key: with PROXY_REQUIRE_TOKEN on, every caller also sends a
dashboard API token with the `proxy` scope (header X-Toki-Token), besides its upstream
key. The token says which caller is allowed through the dashboard; the upstream key
still says whose TOKI quota is used. Checks are cached like account lookups, so a
call costs no query; a revoked token stops working within TOKI_PROXY_ACCOUNT_CACHE_SECONDS.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from toki_dashboard.crypto import sha256_hex
from usage.models import TokenScope
from usage.services import authenticate_api_token

UNKNOWN_TOKEN_SECONDS = 5.0  # an unknown token is looked up again this soon


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class _Seen:
    account_id: int | None  # None: no active token with this value
    may_proxy: bool


def _lookup(plaintext: str) -> _Seen:
    try:
        token = authenticate_api_token(plaintext)
    except Exception:
        connection.close()  # a fresh connection next time
        raise
    if token is None:
        return _Seen(None, False)
    return _Seen(token.account_id, token.allows(TokenScope.PROXY))


class CallerTokens:
    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._cache: dict[str, tuple[_Seen, float]] = {}

    async def refusal(self, plaintext: str | None, account_id: int) -> Refusal | None:
        """Why this call may not go through, or None when its token is good for the account."""
        if not plaintext:
            return Refusal(
                401,
                "missing_proxy_token",
                "This proxy requires a dashboard API token with the proxy scope in the X-Toki-Token header.",
            )
        seen = await self._seen(plaintext)
        if seen.account_id is None:
            return Refusal(401, "invalid_proxy_token", "The X-Toki-Token header holds no active dashboard token.")
        if not seen.may_proxy:
            return Refusal(403, "proxy_scope_missing", "This dashboard token does not have the proxy scope.")
        if seen.account_id != account_id:
            return Refusal(403, "proxy_token_wrong_account", "This dashboard token belongs to another account.")
        return None

    async def _seen(self, plaintext: str) -> _Seen:
        digest = sha256_hex(plaintext)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        seen = await asyncio.get_running_loop().run_in_executor(self._executor, _lookup, plaintext)
        ttl = settings.TOKI_PROXY_ACCOUNT_CACHE_SECONDS if seen.account_id is not None else UNKNOWN_TOKEN_SECONDS
        if len(self._cache) > 10_000:  # random tokens from a scan must not grow the cache without bound
            self._cache.clear()
        self._cache[digest] = (seen, now + ttl)
        return seen
