"""Writes for the usage app. Every ingestion path ends in `record_usage`."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from toki_dashboard.crypto import sha256_hex
from toki_dashboard.roles import Role
from usage import identity, rollups
from usage.accepted_parameters import note_accepted_parameters
from usage.estimation.estimator import current_estimator
from usage.ingestion import RowBuilder, content_hash, legacy_content_hash, resolve_keys
from usage.models import (
    Account,
    ApiKey,
    ApiToken,
    CallSighting,
    Membership,
    Provider,
    RegisteredRequest,
    TokenScope,
    UsageRecord,
    UserLanguage,
)
from usage.pricing.price_book import PriceBook
from usage.signals import key_renamed, usage_recorded
from usage.sql import by_account_key, insert_ignoring_conflicts, insert_returning, staged
from usage.wire import IngestRecord

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    # Among the duplicates: calls another source had already recorded (linked as seen by).
    other_source_duplicates: int = 0
    # Records the database refused, kept as dead letters (usage.deadletters): index, request_id, reason.
    set_aside: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.conflicts.extend(other.conflicts)
        self.other_source_duplicates += other.other_source_duplicates
        self.set_aside.extend(other.set_aside)


def record_usage(
    account: Account,
    records: Sequence[tuple[int, IngestRecord]],
    *,
    source: str,
    digests: Sequence[str] | None = None,
) -> IngestResult:
    """Store validated records exactly once and add them to the rollups.

    `records` pairs each record with its index in the caller's batch, so that
    conflicts can be reported against it. A replay (same request_id, same content)
    is a duplicate and changes nothing; the same request_id with other content is
    a conflict and the stored record is kept. A call another source already recorded
    (the same provider id, see usage.identity) is a duplicate too: linked to the record
    that counts it, counted nowhere. `digests`: the records' content hashes, when the
    caller computed them already (usage.ingestion.content_hash).
    """
    result = IngestResult()
    if not records:
        return result

    first_by_id, repeats = _hashed_by_request_id(records, digests)
    # Sorted so that concurrent batches take row locks in the same order.
    calls = [_call(record, digest) for _, record, digest in sorted(first_by_id.values(), key=lambda e: e[1].request_id)]
    with transaction.atomic():
        placed = identity.plan(account, calls, source)
        registered = _register(account, placed.records)
        # Only what is new is built (keys, team, estimate, price): a replay stops at the registry.
        fresh = [first_by_id[call["request_id"]] for call in placed.records if call["request_id"] in registered]
        seen = [(first_by_id[call["request_id"]], record_id) for call, record_id in placed.seen]
        rows, seen_rows = _built(account, source, fresh, seen)
        counted, linked = _store(account, rows, seen_rows, source)

    stored = {row["request_id"] for row in counted}
    result.accepted = len(stored)
    result.other_source_duplicates = len(linked)
    result.duplicates = len(linked)
    others = [e for rid, e in first_by_id.items() if rid not in stored and rid not in linked] + repeats
    _count_duplicates_and_conflicts(result, account, others, placed.sighted)
    return result


HashedRecord = tuple[int, IngestRecord, str]  # (index in the caller's batch, record, content hash)


def _hashed_by_request_id(
    records: Sequence[tuple[int, IngestRecord]], digests: Sequence[str] | None
) -> tuple[dict[str, HashedRecord], list[HashedRecord]]:
    """Each record with its content hash: the first of each request id, and the repeats."""
    if digests is None:
        digests = [content_hash(record) for _, record in records]
    first_by_id: dict[str, HashedRecord] = {}
    repeats: list[HashedRecord] = []
    for (index, record), digest in zip(records, digests, strict=True):
        entry = (index, record, digest)
        if record.request_id in first_by_id:
            repeats.append(entry)
        else:
            first_by_id[record.request_id] = entry
    return first_by_id, repeats


def _call(record: IngestRecord, digest: str) -> identity.Row:
    """What placing a record needs of it (usage.identity): its ids, its moment and its digest."""
    return {
        "request_id": record.request_id,
        "response_id": record.response_id or "",
        "upstream_request_id": record.upstream_request_id or "",
        "occurred_at": record.occurred_at.astimezone(UTC),
        "content_hash": digest,
    }


REGISTERED = ("request_id", "occurred_at", "content_hash")


def _register(account: Account, calls: Sequence[identity.Row]) -> set[str]:
    """Give the calls' request ids their place in the registry; returns those registered now.

    Only those become records: a replay or a conflict finds its id taken, and a concurrent
    batch with the same id waits on the registry's unique index until this one commits."""
    rows = [
        {
            "account": account.pk,
            "request_id": c["request_id"],
            "occurred_at": c["occurred_at"],
            "content_hash": c["content_hash"],
        }
        for c in calls
    ]
    return set(
        insert_ignoring_conflicts(RegisteredRequest, rows, conflict=("account", "request_id"), returning="request_id")
    )


def _built(
    account: Account, source: str, fresh: Sequence[HashedRecord], seen: Sequence[tuple[HashedRecord, int]]
) -> tuple[list[identity.Row], list[tuple[identity.Row, int]]]:
    """The rows of the new records, and of the calls another source counts (with its record's id)."""
    if not fresh and not seen:
        return [], []
    wanted = [record for _, record, _ in fresh] + [record for (_, record, _), _ in seen]
    keys = resolve_keys(account, {record.api_key for record in wanted if record.api_key})
    builder = RowBuilder(account, keys, PriceBook.for_account(account), current_estimator(), source)
    rows = [builder.build(record, digest) for _, record, digest in fresh]
    return rows, [(builder.build(record, digest), record_id) for (_, record, digest), record_id in seen]


def _store(
    account: Account, rows: list[identity.Row], seen: list[tuple[identity.Row, int]], source: str
) -> tuple[list[identity.Row], set[str]]:
    """Inside the caller's transaction: insert the rows of registered request ids, claim their
    calls, add what counts to the rollups and link the calls another source already counted.
    Returns the counted rows and the linked request ids."""
    with staged(UsageRecord, rows) as stage:
        ids = dict(insert_returning(UsageRecord, rows, returning=("request_id", "id"), stage=stage))
        counted, taken = identity.claim(account, rows, ids, source)
        if stage is None:
            rollups.add(counted)
        else:  # PostgreSQL sums the staged rows; calls another source claimed meanwhile are taken back out
            rollups.add_staged(stage)
            rollups.add([row for row, _ in taken], sign=-1)
        note_accepted_parameters(account, counted, stage=stage)
    linked = identity.link(account, [*seen, *taken], source)
    if counted:
        transaction.on_commit(
            lambda: usage_recorded.send(sender=UsageRecord, account=account, inserted=len(counted), source=source)
        )
    return counted, linked


def _count_duplicates_and_conflicts(
    result: IngestResult, account: Account, others: list[HashedRecord], sighted: dict[str, str]
) -> None:
    """Records not stored now are duplicates when the stored record has their content, else
    conflicts (reported by index, in the caller's order)."""
    stored_hash = _stored_hashes(account, [e[1].request_id for e in others], sighted)
    for index, record, digest in sorted(others, key=lambda e: e[0]):
        known = stored_hash.get(record.request_id)
        # Records stored before hashes were normalised match the hash of what was sent.
        if known == digest or (known is not None and known == legacy_content_hash(record)):
            result.duplicates += 1
        else:
            result.conflicts.append({"index": index, "request_id": record.request_id})


def _stored_hashes(account: Account, request_ids: list[str], sighted: dict[str, str]) -> dict[str, str]:
    """The content hash stored under each request_id, as a record (its registry entry, which
    outlives the raw record) or as another source's sighting (`sighted`: those known already)."""
    found = {request_id: sighted[request_id] for request_id in request_ids if request_id in sighted}
    for model in (RegisteredRequest, CallSighting):
        missing = [request_id for request_id in request_ids if request_id not in found]
        if not missing:
            break
        found.update(by_account_key(model, account.pk, "request_id", missing, ("request_id", "content_hash")))
    return found


def create_account(
    *, name: str, slug: str = "", currency: str = "USD", provider: str = Provider.MANUAL, base_url: str = ""
) -> Account:
    account = Account(
        name=name,
        slug=slug or slugify(name),
        currency=currency.upper(),
        provider=provider,
        base_url=base_url or Account.default_base_url(),
    )
    account.full_clean()
    account.save()
    return account


def add_member(*, account: Account, user: Any, role: Role | None = None) -> tuple[Membership, bool]:
    """Makes `user` a member of `account` (once: True when new) and, with `role`, gives them
    that role. Roles are groups and hold in every account the user is a member of."""
    membership, created = Membership.objects.get_or_create(account=account, user=user)
    if role is not None:
        user.groups.add(Group.objects.get_or_create(name=role.value)[0])
        user._toki_roles = None  # roles_of() caches a user's roles on the object
    return membership, created


def create_api_token(
    *, account: Account, name: str, scopes: Sequence[str], created_by: Any = None
) -> tuple[ApiToken, str]:
    """A new token and its plaintext, which is shown once and never stored."""
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(TokenScope.values)}; got {', '.join(unknown) or 'none'}")
    plaintext = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        account=account,
        name=name,
        scopes=sorted(set(scopes)),
        token_hash=sha256_hex(plaintext),
        hint=plaintext[: len(ApiToken.PREFIX) + 4],
        created_by=created_by,
    )
    return token, plaintext


def revoke_api_token(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def authenticate_api_token(plaintext: str) -> ApiToken | None:
    """The active token with this plaintext, noting when it was last used (at most once a minute)."""
    token = (
        ApiToken.objects.select_related("account")
        .filter(token_hash=sha256_hex(plaintext), revoked_at__isnull=True)
        .first()
    )
    if token is not None:
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
    return token


# --- Keys, as people edit them ------------------------------------------------------------


def rename_api_key(key: ApiKey, *, name: str, team: str, user: Any = None) -> ApiKey:
    # An UPDATE of these two columns only: records keep pointing at the same row, and the
    # fingerprint that recognises the key is never touched.
    with transaction.atomic():
        old_name = ApiKey.objects.select_for_update().values_list("name", flat=True).get(pk=key.pk)
        ApiKey.objects.filter(pk=key.pk).update(name=name, team=team)
        if old_name != name:  # what billing keeps by key name (key budgets) follows the key
            key_renamed.send(
                sender=ApiKey, account=key.account, api_key_id=key.pk, old_name=old_name, new_name=name, user=user
            )
    key.name, key.team = name, team
    return key


def choose_language(*, user_id: int, language: str) -> UserLanguage:
    """The language the user reads the dashboard in from now on, in every session (one of settings.LANGUAGES)."""
    choice, _created = UserLanguage.objects.update_or_create(user_id=user_id, defaults={"language": language})
    return choice
