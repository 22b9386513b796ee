"""Where the proxy's records wait while the database is unavailable: append-only JSONL
files under settings.TOKI_PROXY_SPOOL_DIR, replayed through `record_usage` later.

Replays are safe to repeat: `record_usage` is idempotent on request_id, so a record
written twice is stored once. Each process appends to its own file under an
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
from typing import IO

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from pydantic import ValidationError

from usage.schemas import RecordIn

logger = logging.getLogger(__name__)

Batch = Sequence[tuple[int, RecordIn]]  # (account id, record)
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
    lines = b"".join(
        json.dumps(
            {"account": account_id, "record": record.model_dump(mode="json", exclude_none=True)},
            ensure_ascii=False,
        ).encode()
        + b"\n"
        for account_id, record in records
    )
    with _locked_for_append(directory() / f"proxy-{os.getpid()}.jsonl") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())


def _take_back_abandoned() -> None:
    now = time.time()
    for claimed in directory().glob("replaying-*.jsonl"):
        try:
            if now - claimed.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                os.rename(claimed, claimed.with_name(f"proxy-abandoned-{uuid.uuid4().hex}.jsonl"))
        except FileNotFoundError:
            continue


def _read(path: Path) -> tuple[list[tuple[int, RecordIn]], list[bytes]]:
    """Records of a claimed file, and the lines that cannot be read back (kept aside)."""
    with open(path, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)  # an append in progress finishes first
        lines = handle.read().splitlines()
    records, bad = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            records.append((int(entry["account"]), RecordIn.model_validate(entry["record"])))
        except (ValueError, KeyError, TypeError, ValidationError):
            bad.append(line)  # a torn last line after a crash, say
    return records, bad


def _set_aside(lines: list[bytes], reason: str) -> None:
    if lines:
        path = directory() / f"rejected-{int(time.time())}-{uuid.uuid4().hex[:8]}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        logger.error("proxy spool: %d record(s) could not be written (%s); kept in %s", len(lines), reason, path)


UNAVAILABLE = (OperationalError, InterfaceError)


def replay(store: Callable[[Batch], None] | None = None) -> int:
    """Write every spooled record; returns how many were handed to the database.

    Stops at the first sign that the database is still unavailable, leaving the rest
    spooled. A record the database refuses for another reason is set aside in a
    `rejected-…` file and logged rather than retried forever.
    """
    if store is None:
        from usage.proxy.recorder import store_records as store
    _take_back_abandoned()
    written = 0
    for path in pending():
        claimed = path.with_name(f"replaying-{uuid.uuid4().hex}.jsonl")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            continue  # another replayer took it
        records, bad = _read(claimed)
        _set_aside(bad, "unreadable")
        for start in range(0, len(records), REPLAY_BATCH):
            batch = records[start : start + REPLAY_BATCH]
            try:
                store(batch)
            except UNAVAILABLE:
                append(records[start:])
                os.unlink(claimed)
                logger.warning("proxy spool: database still unavailable, %d record(s) kept", len(records) - start)
                return written
            except DatabaseError:
                done, unavailable = _store_one_by_one(batch, store)
                written += done
                if unavailable:
                    append(records[start + done :])
                    os.unlink(claimed)
                    return written
                continue
            written += len(batch)
        os.unlink(claimed)
    if written:
        logger.info("proxy spool: wrote %d record(s) kept while the database was unavailable", written)
    return written


def _store_one_by_one(batch: Batch, store: Callable[[Batch], None]) -> tuple[int, bool]:
    """Records of a batch the database refused, one at a time: (how many were handled,
    whether it became unavailable meanwhile, the rest of the batch then still to do)."""
    handled = 0
    for account_id, record in batch:
        try:
            store([(account_id, record)])
        except UNAVAILABLE:
            return handled, True
        except DatabaseError as exc:
            line = json.dumps({"account": account_id, "record": record.model_dump(mode="json", exclude_none=True)})
            _set_aside([line.encode()], f"{type(exc).__name__}: {exc}")
        handled += 1
    return handled, False
