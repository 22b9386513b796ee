"""Nothing lost: records that cannot be stored as they are become dead letters, to replay.

Every ingestion path (proxy, API, import, sync) stores through `record_or_set_aside`:
`record_usage`, except that when the database refuses a batch for a reason other than
being unavailable (a value out of range, a constraint), the batch is stored record by
record and each record still refused is set aside, so one bad record or one failing
rollup group never blocks the rest of its batch or any later batch. An outage is raised
to the caller, which keeps the records (the proxy spools them; the API answers 503).

A dead letter keeps the record's fields as JSON, never a prompt or an output (records
hold only lengths), and a full key only encrypted. `replay` stores letters again after a
fix; it is idempotent: `record_usage` stores a request_id once, and a resolved letter is
never replayed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from toki_dashboard import crypto
from toki_dashboard.crypto import sha256_hex
from usage.ingestion import key_identity, sent_fields
from usage.models import Account, DeadLetter
from usage.schemas import RecordIn, describe
from usage.services import IngestResult, record_usage
from usage.wire import IngestRecord

logger = logging.getLogger(__name__)

OUTAGE = (OperationalError, InterfaceError)
MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class Unstorable:
    """A record that could not be stored as it is: its fields (JSON-able) and why."""

    request_id: str
    fields: dict[str, Any]
    reason: str

    @classmethod
    def of(cls, record: IngestRecord, reason: str) -> Unstorable:
        return cls(record.request_id, sent_fields(record), reason)

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "fields": _jsonable(self.fields), "reason": self.reason}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Unstorable:
        return cls(str(value["request_id"]), dict(value["fields"]), str(value["reason"]))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return str(value)


def _printable(text: str, limit: int) -> str:
    """`text` as a database stores any string: NUL and lone surrogates escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")[:limit]


def _letter(account_id: int, source: str, item: Unstorable) -> DeadLetter:
    fields = dict(_jsonable(item.fields))
    key, encrypted = fields.get("api_key"), ""
    if isinstance(key, str) and key_identity(key).fingerprint.startswith("sha256:"):
        identity = key_identity(key)
        fields["api_key"] = identity.name  # a key's own text never goes into the payload
        try:
            encrypted = crypto.encrypt(key)
        except ImproperlyConfigured:  # no FIELD_ENCRYPTION_KEY: a replay files it under the key's name
            logger.warning("dead letter of %s: no FIELD_ENCRYPTION_KEY, its key is kept by name only", source)
    payload = json.dumps(fields, ensure_ascii=True, sort_keys=True)
    key_digest = sha256_hex(key) if encrypted and isinstance(key, str) else ""
    return DeadLetter(
        account_id=account_id,
        source=source,
        request_id=_printable(item.request_id, 200),
        reason=_printable(item.reason, MAX_REASON),
        payload=payload,
        api_key_encrypted=encrypted,
        digest=sha256_hex(f"{source}\n{payload}\n{key_digest}"),
    )


def set_aside(account: Account | int, source: str, items: Sequence[Unstorable]) -> int:
    """Keep records as dead letters; the same record set aside again while open is one letter."""
    if not items:
        return 0
    account_id = account if isinstance(account, int) else account.pk
    letters = [_letter(account_id, source, item) for item in items]
    DeadLetter.objects.bulk_create(letters, ignore_conflicts=True)
    for item in items:
        logger.error("usage: %s record %r set aside: %s", source, _printable(item.request_id, 200), item.reason)
    return len(letters)


def _refusal(exc: DatabaseError) -> str:
    return f"The database refused it: {type(exc).__name__}: {exc}".strip()


def _isolated() -> Any:
    # Inside a caller's transaction a refused statement would abort it: a savepoint keeps it usable.
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def record_or_set_aside(
    account: Account,
    records: Sequence[tuple[int, IngestRecord]],
    *,
    source: str,
    digests: Sequence[str] | None = None,
) -> IngestResult:
    """`record_usage`, setting aside each record the database refuses; raises on an outage."""
    try:
        with _isolated():
            return record_usage(account, records, source=source, digests=digests)
    except OUTAGE:
        raise
    except DatabaseError as exc:
        logger.warning(
            "usage: the database refused a %s batch of %d (%s); storing it record by record",
            source,
            len(records),
            type(exc).__name__,
        )
    result = IngestResult()
    refused: list[Unstorable] = []
    for index, record in records:
        try:
            with _isolated():
                result.merge(record_usage(account, [(index, record)], source=source))
        except OUTAGE:
            raise
        except DatabaseError as exc:
            item = Unstorable.of(record, _refusal(exc))
            refused.append(item)
            result.set_aside.append({"index": index, "request_id": record.request_id, "reason": item.reason})
    set_aside(account, source, refused)
    return result


# --- Replays ---------------------------------------------------------------------------------


@dataclass
class ReplaySummary:
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    still_failing: list[tuple[int, str]] = field(default_factory=list)  # (letter id, reason)

    def describe(self) -> str:
        return (
            f"{self.stored} stored, {self.duplicates} already stored, {self.conflicts} conflicting, "
            f"{len(self.still_failing)} still failing"
        )


def open_letters() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.filter(resolved_at__isnull=True)


def open_count() -> int:
    return open_letters().count()


def replay(letters: Iterable[DeadLetter]) -> ReplaySummary:
    """Store open letters again: resolved when stored (or found stored), kept with the new
    reason when not. Raises on a database outage, leaving the rest open."""
    summary = ReplaySummary()
    for letter in letters:
        if letter.resolved_at is not None:
            continue
        resolution, reason = _replay_one(letter)
        now = timezone.now()
        changes: dict[str, Any] = {"attempts": F("attempts") + 1, "last_attempt_at": now}
        if resolution is None:
            summary.still_failing.append((letter.pk, reason))
            changes["reason"] = _printable(reason, MAX_REASON)
        else:
            changes |= {"resolved_at": now, "resolution": resolution}
            summary.stored += resolution == DeadLetter.Resolution.STORED
            summary.duplicates += resolution == DeadLetter.Resolution.DUPLICATE
            summary.conflicts += resolution == DeadLetter.Resolution.CONFLICT
        DeadLetter.objects.filter(pk=letter.pk, resolved_at__isnull=True).update(**changes)
    return summary


def _replay_one(letter: DeadLetter) -> tuple[str | None, str]:
    try:
        fields = json.loads(letter.payload)
        if not isinstance(fields, dict):
            return None, "The payload is not a JSON object of record fields."
        if letter.api_key_encrypted:
            fields["api_key"] = crypto.decrypt(letter.api_key_encrypted)
        record = RecordIn.model_validate(fields)
    except ValidationError as exc:
        return None, "Still invalid: " + describe(exc.errors(include_url=False))[1]
    except ValueError as exc:
        return None, f"The payload is not valid JSON: {exc}"
    except ImproperlyConfigured as exc:
        return None, str(exc)
    try:
        with _isolated():
            result = record_usage(letter.account, [(0, record)], source=letter.source)
    except OUTAGE:
        raise
    except DatabaseError as exc:
        return None, _refusal(exc)
    if result.accepted:
        return DeadLetter.Resolution.STORED, ""
    if result.duplicates:
        return DeadLetter.Resolution.DUPLICATE, ""
    return DeadLetter.Resolution.CONFLICT, ""


def discard(letters: QuerySet[DeadLetter]) -> int:
    """Close letters that will not be replayed (kept, marked discarded)."""
    return letters.filter(resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolution=DeadLetter.Resolution.DISCARDED
    )
