"""Where the proxy's records wait while the database is unavailable: append-only JSONL
files under settings.TOKI_PROXY_SPOOL_DIR, replayed through `record_usage` later.

Replays are safe to repeat: `record_usage` is idempotent on request_id, so a record
written twice is stored once; what cannot be stored as it is waits here too and becomes
a DeadLetter on replay (usage.deadletters). Each process appends to its own file under an
exclusive lock; a replayer claims a file by renaming it (atomic, so two replayers
never take the same file), then waits for the lock so that an append in progress
finishes first. A writer that locked a file which has been renamed meanwhile notices
(the path no longer names its inode) and appends to a fresh file instead.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import DatabaseError
from pydantic import ValidationError

from usage.deadletters import Unstorable
from usage.schemas import RecordIn, describe

logger = logging.getLogger(__name__)

Batch = Sequence[tuple[int, RecordIn | Unstorable]]  # (account id, record or what is kept of it)
REPLAY_BATCH = 1000
# A claimed file whose replayer died is taken back after this long.
ABANDONED_AFTER_SECONDS = 600


def directory() -> Path:
    path = Path(settings.TOKI_PROXY_SPOOL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def pending() -> list[Path]:
    return sorted(directory().glob("proxy-*.jsonl"))


@contextmanager
def _locked_for_append(path: Path) -> Iterator[IO[bytes]]:
    while True:
        handle = open(path, "ab")  # noqa: SIM115  (closed below, after the lock is released)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(handle.fileno()).st_ino:
                yield handle
                return
        finally:
            handle.close()  # closing releases the lock


def append(records: Batch) -> None:
    """Keep records durably (flushed and fsynced) until a replay writes them."""
    if not records:
        return
    lines = b"".join(json.dumps(_entry(account_id, record)).encode() + b"\n" for account_id, record in records)
    with _locked_for_append(directory() / f"proxy-{os.getpid()}.jsonl") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())


def _entry(account_id: int, record: RecordIn | Unstorable) -> dict[str, Any]:
    # ASCII JSON: a lone surrogate in an unstorable record survives as an escape.
    if isinstance(record, Unstorable):
        return {"account": account_id, "unstorable": record.as_json()}
    return {"account": account_id, "record": record.model_dump(mode="json", exclude_none=True)}


def _take_back_abandoned() -> None:
    now = time.time()
    for claimed in directory().glob("replaying-*.jsonl"):
        try:
            if now - claimed.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                os.rename(claimed, claimed.with_name(f"proxy-abandoned-{uuid.uuid4().hex}.jsonl"))
        except FileNotFoundError:
            continue


def _read(path: Path) -> tuple[list[tuple[int, RecordIn | Unstorable]], list[bytes]]:
    """Records of a claimed file, and the lines that are not records at all (a torn last line
    after a crash, say), which are kept aside in a file."""
    with open(path, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)  # an append in progress finishes first
        lines = handle.read().splitlines()
    records: list[tuple[int, RecordIn | Unstorable]] = []
    bad = []
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            account = int(entry["account"])
            if "unstorable" in entry:
                records.append((account, Unstorable.from_json(entry["unstorable"])))
            else:
                records.append((account, _record(entry["record"])))
        except (ValueError, KeyError, TypeError):
            bad.append(line)
    return records, bad


def _record(fields: dict[str, Any]) -> RecordIn | Unstorable:
    try:
        return RecordIn.model_validate(fields)
    except ValidationError as exc:  # spooled by a version that accepted it, say
        reason = "Invalid: " + describe(exc.errors(include_url=False))[1]
        request_id = fields.get("request_id", "") if isinstance(fields, dict) else ""
        return Unstorable(str(request_id), fields if isinstance(fields, dict) else {"value": fields}, reason)


def _set_aside(lines: list[bytes], reason: str) -> None:
    if lines:
        path = directory() / f"rejected-{int(time.time())}-{uuid.uuid4().hex[:8]}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        logger.error("proxy spool: %d record(s) could not be written (%s); kept in %s", len(lines), reason, path)


def replay(store: Callable[[Batch], None]) -> int:
    """Write every spooled record; returns how many were handed to the database.

    Stops at the first failure (the database still unavailable), leaving the rest spooled.
    Records the database refuses for another reason become dead letters inside `store`.
    """
    _take_back_abandoned()
    written = 0
    for path in pending():
        claimed = path.with_name(f"replaying-{uuid.uuid4().hex}.jsonl")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            continue  # another replayer took it
        records, bad = _read(claimed)
        _set_aside(bad, "not a record")
        for start in range(0, len(records), REPLAY_BATCH):
            try:
                store(records[start : start + REPLAY_BATCH])
            except DatabaseError as exc:
                append(records[start:])
                os.unlink(claimed)
                logger.warning(
                    "proxy spool: database still unavailable (%s), %d record(s) kept",
                    type(exc).__name__,
                    len(records) - start,
                )
                return written
            written += len(records[start : start + REPLAY_BATCH])
        os.unlink(claimed)
    if written:
        logger.info("proxy spool: wrote %d record(s) kept while the database was unavailable", written)
    return written
