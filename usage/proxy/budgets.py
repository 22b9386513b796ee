"""Budget enforcement at the proxy: a check before forwarding, from an in-process snapshot.

Each process keeps the gate state of every account it serves (`usage.budget_gate`) and reads
it again from the cache every TOKI_PROXY_BUDGET_REFRESH_SECONDS, in the background: a call
costs a dictionary lookup, never a database query or a cache read on its path (only the very
first call of an account waits for the first read). A refused call is answered 429 with an
OpenAI-shaped `insufficient_quota` / `budget_exceeded` error that names the budget and when
it resets, and is recorded like any failed call: no tokens, no cost, cause
`insufficient_quota`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from django.conf import settings

from usage import budget_gate
from usage.budget_gate import Block, GateState
from usage.proxy.recorder import key_value

logger = logging.getLogger(__name__)

STATUS = 429
ERROR_TYPE = "insufficient_quota"
ERROR_CODE = "budget_exceeded"
MAX_KEYS = 10_000  # remembered key fingerprints; random keys from a scan must not grow it for ever


class BudgetGate:
    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._states: dict[int, tuple[GateState, float]] = {}
        self._refreshing: set[int] = set()
        self._fingerprints: dict[str, str | None] = {}

    async def block(self, account_id: int, authorization: str | None, team: str | None, body: bytes) -> Block | None:
        """The block that refuses this call, or None to forward it."""
        state = await self._state(account_id)
        if state.empty:
            return None
        now = datetime.now(UTC)
        fingerprint = self._fingerprint(authorization) if state.needs_key else None
        model = _model(body) if state.models else None
        return state.block_for(now=now, fingerprint=fingerprint, team=team, model=model)

    async def _state(self, account_id: int) -> GateState:
        cached = self._states.get(account_id)
        now = time.monotonic()
        if cached is None:
            return await self._refresh(account_id)
        if cached[1] <= now and account_id not in self._refreshing:
            self._refreshing.add(account_id)
            task = asyncio.get_running_loop().create_task(self._refresh(account_id))
            task.add_done_callback(lambda _: self._refreshing.discard(account_id))
        return cached[0]

    async def _refresh(self, account_id: int) -> GateState:
        try:
            found = await asyncio.get_running_loop().run_in_executor(self._executor, budget_gate.read, account_id)
        except Exception:  # the cache is unavailable: keep what is known, fail open otherwise
            logger.warning("proxy: could not read the budget state of account %s", account_id, exc_info=True)
            found = self._states[account_id][0] if account_id in self._states else None
        state = found or GateState()
        self._states[account_id] = (state, time.monotonic() + settings.TOKI_PROXY_BUDGET_REFRESH_SECONDS)
        return state

    def _fingerprint(self, authorization: str | None) -> str | None:
        if authorization is None:
            return None
        if authorization not in self._fingerprints:
            if len(self._fingerprints) > MAX_KEYS:
                self._fingerprints.clear()
            value = key_value(authorization)
            self._fingerprints[authorization] = budget_gate.key_fingerprint(value) if value else None
        return self._fingerprints[authorization]


# A JSON string value of a "model" key; quotes inside message texts are escaped, so they never match.
MODEL_FIELD = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _model(body: bytes) -> str | None:
    """The request's model: found without parsing the body when the field appears once (the usual
    case, some µs for any body size), else by parsing it."""
    found = MODEL_FIELD.findall(body)
    if not found:
        return None
    if len(found) == 1 and b"\\" not in found[0]:
        model: bytes = found[0]
        return model.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    named = parsed.get("model") if isinstance(parsed, dict) else None
    return named if isinstance(named, str) else None


def refusal(block: Block) -> tuple[int, str, str, str]:
    """(status, type, code, message): the answer, and the failure recorded on the call."""
    return STATUS, ERROR_TYPE, ERROR_CODE, block.message
