"""Which calls the logging proxy must refuse because an enforced budget is exhausted.

usage never imports billing, which owns budgets. So usage says here what the proxy needs,
a small **gate state** per account, and where it is kept: the Django cache (Redis in
server mode, files in embedded mode), shared by every process. Billing computes the state
from the rollups and publishes it (`billing.budgets.gate`) after each batch of usage, each
change of a budget and every minute; each proxy process reads it again every
TOKI_PROXY_BUDGET_REFRESH_SECONDS, so a call costs no database query and no cache read.

A state lists blocks by what a call is known by before it is forwarded: its API key (the
fingerprint ingestion keys it by), its team (the X-Toki-Team header, else its key's team),
its model (the request body's `model`, matched against globs), or the whole account. A
block ends by itself at `resets_at` (the budget's next period). No state means no block:
enforcement fails open, so a lost cache never stops the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from django.core.cache import cache
from django.db import connection

from usage.ingestion import key_identity
from usage.teams.resolve import folded

VERSION = 1


@dataclass(frozen=True, slots=True)
class Block:
    budget: str
    message: str  # what the refused caller reads: the budget's name and when it resets
    resets_at: datetime | None  # None: a fixed range, which does not reset

    def active(self, now: datetime) -> bool:
        return self.resets_at is None or now < self.resets_at


def _team_block(teams: dict[str, Block], team: str) -> Block | None:
    """The block of `team` spelt otherwise ("Growth" for a header saying "growth "): one team."""
    wanted = folded(team)
    return next((block for name, block in teams.items() if folded(name) == wanted), None)


@dataclass(frozen=True)
class GateState:
    account: Block | None = None
    keys: dict[str, Block] = field(default_factory=dict)  # key fingerprint → block
    teams: dict[str, Block] = field(default_factory=dict)  # team → block
    key_teams: dict[str, str] = field(default_factory=dict)  # fingerprint → team, for blocked teams
    models: tuple[tuple[str, Block], ...] = ()  # (model name or glob, block)

    @property
    def blocks(self) -> list[Block]:
        return [
            *([self.account] if self.account else []),
            *self.keys.values(),
            *self.teams.values(),
            *(b for _, b in self.models),
        ]

    @property
    def empty(self) -> bool:
        return not self.blocks

    @property
    def needs_key(self) -> bool:
        return bool(self.keys or self.key_teams)

    def block_for(self, *, now: datetime, fingerprint: str | None, team: str | None, model: str | None) -> Block | None:
        """The first active block that applies to a call, or None."""
        if self.account is not None and self.account.active(now):
            return self.account
        if fingerprint is not None and (block := self.keys.get(fingerprint)) and block.active(now):
            return block
        team = team or (self.key_teams.get(fingerprint) if fingerprint else None)
        if team and (block := self.teams.get(team) or _team_block(self.teams, team)) and block.active(now):
            return block
        if model is not None:
            for pattern, block in self.models:
                if (pattern == model or fnmatchcase(model, pattern)) and block.active(now):
                    return block
        return None

    def to_json(self) -> dict[str, Any]:
        def block(b: Block) -> dict[str, Any]:
            return {
                "budget": b.budget,
                "message": b.message,
                "resets_at": b.resets_at.isoformat() if b.resets_at else None,
            }

        return {
            "version": VERSION,
            "account": block(self.account) if self.account else None,
            "keys": {k: block(b) for k, b in self.keys.items()},
            "teams": {t: block(b) for t, b in self.teams.items()},
            "key_teams": self.key_teams,
            "models": [[pattern, block(b)] for pattern, b in self.models],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateState:
        def block(raw: dict[str, Any]) -> Block:
            resets = raw.get("resets_at")
            return Block(raw["budget"], raw["message"], datetime.fromisoformat(resets) if resets else None)

        return cls(
            account=block(data["account"]) if data.get("account") else None,
            keys={k: block(b) for k, b in data.get("keys", {}).items()},
            teams={t: block(b) for t, b in data.get("teams", {}).items()},
            key_teams=dict(data.get("key_teams", {})),
            models=tuple((pattern, block(b)) for pattern, b in data.get("models", [])),
        )


def cache_key(account_id: int) -> str:
    return f"usage:budget-gate:{connection.settings_dict['NAME']}:{account_id}"


def publish(account_id: int, state: GateState) -> None:
    """Store the account's state for every proxy process (kept until replaced)."""
    cache.set(cache_key(account_id), state.to_json(), timeout=None)


def read(account_id: int) -> GateState | None:
    raw = cache.get(cache_key(account_id))
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        return None
    return GateState.from_json(raw)


def key_fingerprint(value: str) -> str:
    """The fingerprint ingestion keys a raw key value by (usage.ingestion.key_identity): a
    name by its name, a value that looks like a secret by the SHA-256 of the secret."""
    return key_identity(value).fingerprint
