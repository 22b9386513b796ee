"""From a validated record (usage.wire.IngestRecord) to the row stored for it: keys, error cause, tokens, cost.

Pure apart from key resolution, which creates ApiKey rows on first sight.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from django.utils import timezone

from toki_dashboard.crypto import sha256_hex
from usage import wire
from usage.error_causes import classify_error, shown_message
from usage.estimation.features import Estimator, Lengths
from usage.key_secrets import looks_like_secret, without_scheme
from usage.models import Account, ApiKey, ErrorCause, TokensSource
from usage.parameters import mask_of
from usage.pricing.price_book import PriceBook, Valuation, valuation, was_served
from usage.schemas import KEY_NAME_PREFIX, Profile
from usage.teams.resolve import TeamResolver
from usage.wire import IngestRecord

FULL_SECRET = re.compile(r"^(sk|tk|pk|rk)-[A-Za-z0-9_\-]{16,}$")
NAME_PREFIX = KEY_NAME_PREFIX
SHOWN_TAIL_MIN_LENGTH = 16  # shorter secrets show no last four: too much of them


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    fingerprint: str
    name: str
    last4: str


def name_fingerprint(name: str) -> str:
    return f"{NAME_PREFIX}{name}"


def declared_name(value: str) -> str | None:
    """The name in a value written `name:<name>`, else None."""
    value = value.strip()
    return value[len(NAME_PREFIX) :].strip() if value.startswith(NAME_PREFIX) else None


def secret_identity(secret: str) -> KeyIdentity:
    """A secret is kept only as its SHA-256 and, if long enough, its last four characters."""
    digest = sha256_hex(secret)
    if FULL_SECRET.match(secret):
        return KeyIdentity(f"sha256:{digest}", f"{secret[:3]}…{secret[-4:]}", secret[-4:])
    if len(secret) >= SHOWN_TAIL_MIN_LENGTH:
        return KeyIdentity(f"sha256:{digest}", f"key …{secret[-4:]}", secret[-4:])
    return KeyIdentity(f"sha256:{digest}", f"key #{digest[:8]}", "")


def key_identity(value: str, *, declared: frozenset[str] = frozenset()) -> KeyIdentity:
    """A key's name when `value` is declared as one (written `name:<name>`, or equal to the name
    of a key the account declared before: `declared`) or does not look like a secret
    (usage.key_secrets); a value that looks like one is kept as its hash (`Bearer …` without
    the scheme, so that it is the same key as the bare secret)."""
    value = value.strip()
    name = declared_name(value)
    if name is None and value in declared:
        name = value
    if name is None and not looks_like_secret(value):
        name = value
    if name is not None:
        return KeyIdentity(name_fingerprint(name), name, "")
    return secret_identity(without_scheme(value))


def resolve_keys(account: Account, values: set[str]) -> dict[str, ApiKey]:
    """The ApiKey for each raw key value, created the first time a key is seen."""
    plain = {value.strip() for value in values if declared_name(value) is None}
    declared = frozenset(
        fingerprint.removeprefix(NAME_PREFIX)
        for fingerprint in ApiKey.objects.filter(
            account=account, fingerprint__in=[name_fingerprint(value) for value in plain]
        ).values_list("fingerprint", flat=True)
    )
    identities = {value: key_identity(value, declared=declared) for value in values}
    fingerprints = {i.fingerprint for i in identities.values()}
    known = {k.fingerprint: k for k in ApiKey.objects.filter(account=account, fingerprint__in=fingerprints)}
    missing = [i for i in {i.fingerprint: i for i in identities.values()}.values() if i.fingerprint not in known]
    if missing:
        ApiKey.objects.bulk_create(
            [ApiKey(account=account, fingerprint=i.fingerprint, name=i.name, last4=i.last4) for i in missing],
            ignore_conflicts=True,
        )
        known.update({k.fingerprint: k for k in ApiKey.objects.filter(account=account, fingerprint__in=fingerprints)})
    return {value: known[identity.fingerprint] for value, identity in identities.items()}


# json.dumps(payload, sort_keys=True, separators=(",", ":")) without building an encoder per call.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def canonical_json(payload: dict[str, Any]) -> bytes:
    """`_CANONICAL_JSON(payload)` as bytes, the hashes' definition: msgspec writes the same
    bytes several times faster when they are ASCII below DEL (json escapes DEL and beyond)."""
    encoded = msgspec.json.encode(payload, order="sorted")
    if encoded.isascii() and b"\x7f" not in encoded:
        return encoded
    return _CANONICAL_JSON(payload).encode()


# Names of the call rather than what it used: a replay that adds or lacks them is still a replay.
NOT_CONTENT = frozenset({"response_id", "upstream_request_id"})
PROFILE_FIELDS = tuple(Profile.model_fields)


def sent_fields(record: IngestRecord) -> dict[str, Any]:
    """The fields a record was sent with, as JSON values, those not given (None) left out:
    pydantic's dump of a RecordIn; usage.wire's equal of it for a record decoded there."""
    if isinstance(record, wire.Record):
        return wire.sent_fields(record)
    return record.model_dump(mode="json", exclude_none=True)


def content_hash(record: IngestRecord) -> str:
    """Digest of what the client sent, so a replay can be told from a conflict.

    Written the same, the same record hashes the same: `occurred_at` is taken in UTC (10:15+01:00
    is 09:15Z) and a declared key name without its `name:`. Records stored before that hashed
    what was sent (`legacy_content_hash`); for those sent in UTC and without `name:`, which
    covers every record of the sync and the proxy, both are the same.
    """
    in_utc = record.occurred_at.astimezone(UTC)
    if isinstance(record, wire.Record):
        payload = wire.sent_fields(record, occurred_at=in_utc)
    else:
        payload = sent_fields(record)
        payload["occurred_at"] = wire.json_instant(in_utc)
    for field_name in NOT_CONTENT:
        payload.pop(field_name, None)
    if record.api_key is not None and (name := declared_name(record.api_key)) is not None:
        payload["api_key"] = name
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def legacy_content_hash(record: IngestRecord) -> str:
    """The digest records were stored with before `content_hash` normalised them: of the record
    exactly as sent. A replay of such a record, sent as it was then, is still a duplicate."""
    payload = sent_fields(record)
    for name in NOT_CONTENT:
        payload.pop(name, None)
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def _profile_counts(profile: Any) -> dict[str, int] | None:
    return None if profile is None else {name: getattr(profile, name) for name in PROFILE_FIELDS}


def lengths_of(record: IngestRecord) -> Lengths:
    return Lengths(
        context_chars=record.context_chars,
        context_bytes=record.context_bytes,
        output_chars=record.output_chars,
        output_bytes=record.output_bytes,
        message_count=record.message_count,
        context_profile=_profile_counts(record.context_profile),
        output_profile=_profile_counts(record.output_profile),
    )


@dataclass
class RowBuilder:
    """Builds UsageRecord rows for one account and one batch."""

    account: Account
    keys: dict[str, ApiKey]
    prices: PriceBook
    estimator: Estimator
    source: str
    # One creation time for the batch: the rows are written together.
    created_at: datetime = field(default_factory=timezone.now)
    teams: TeamResolver = field(init=False)

    def __post_init__(self) -> None:
        self.teams = TeamResolver(self.account, self.keys.values())

    def build(self, record: IngestRecord, digest: str) -> dict[str, Any]:
        """The row for `record`; `digest` is its content_hash, computed once by the caller."""
        key = self.keys.get(record.api_key) if record.api_key else None
        error = record.error
        if error is None:
            error_type = error_code = ""
            cause = classify_error(record.status_code) if record.status_code >= 400 else ErrorCause.NONE
        else:
            error_type = error.type or ""
            error_code = str(error.code) if error.code is not None else ""
            cause = classify_error(record.status_code, error_type, error_code, error.message or "")
        context_profile = _profile_counts(record.context_profile)
        output_profile = _profile_counts(record.output_profile)

        served = was_served(record.status_code, cause)
        prompt, completion, cached, reasoning, tokens_source, estimator_version, value = self._usage_and_cost(
            record, served
        )

        return {
            "account": self.account.pk,
            "request_id": record.request_id,
            "occurred_at": record.occurred_at.astimezone(UTC),
            "model": record.model,
            "api_key": key.id if key else None,
            "team": self.teams.team_for(record.metadata.get("team"), key, record.occurred_at),
            "endpoint": record.endpoint,
            "stream": record.stream,
            "status_code": record.status_code,
            "error_cause": cause.value,
            "error_type": error_type[:100],
            "error_code": error_code[:100],
            "error_message": shown_message(error.message if error else None),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": cached,
            "reasoning_tokens": reasoning,
            "tokens_source": tokens_source.value,
            "estimator_version": estimator_version,
            "context_chars": record.context_chars,
            "context_bytes": record.context_bytes,
            "output_chars": record.output_chars,
            "output_bytes": record.output_bytes,
            "message_count": record.message_count,
            "context_profile": context_profile,
            "output_profile": output_profile,
            "latency_ms": record.latency_ms,
            "ttft_ms": record.ttft_ms,
            "cost": value.cost,
            "cost_source": value.cost_source,
            "price": value.price.id if value.price is not None else None,
            "exchange_rate": value.rate.id if value.rate is not None else None,
            "response_id": record.response_id or "",
            "upstream_request_id": record.upstream_request_id or "",
            "request_params": mask_of(record.parameters) if record.parameters is not None else None,
            "source": self.source,
            "metadata": record.metadata,
            "content_hash": digest,
            "created_at": self.created_at,
        }

    def _usage_and_cost(
        self, record: IngestRecord, served: bool
    ) -> tuple[int, int, int, int, TokensSource, str, Valuation]:
        """The call's tokens (prompt, completion, cached, reasoning), where they came from, the
        estimator's version if estimated, and the call's valuation. A plain tuple: it is made
        once per record on the ingestion path."""
        prompt = completion = cached = reasoning = 0
        tokens_source, estimator_version = TokensSource.NONE, ""
        if record.usage is not None:
            prompt, completion = record.usage.prompt or 0, record.usage.completion or 0
            cached, reasoning = record.usage.cached, record.usage.reasoning
            tokens_source = TokensSource.REPORTED
        elif served and (lengths := lengths_of(record)).has_any:
            # Estimates stand in for usage a served call did not report; a failed call
            # without usage served nothing, so it gets no tokens (its lengths stay).
            estimate = self.estimator.estimate(record.model, lengths)
            prompt, completion = estimate.prompt_tokens, estimate.completion_tokens
            tokens_source, estimator_version = TokensSource.ESTIMATED, estimate.version

        value = valuation(
            self.prices,
            model=record.model,
            at=record.occurred_at,
            served=served,
            tokens_source=tokens_source,
            prompt_tokens=prompt,
            cached_tokens=cached,
            completion_tokens=completion,
            reported_cost=record.cost,
        )
        return prompt, completion, cached, reasoning, tokens_source, estimator_version, value
