"""From a finished call to a stored UsageRecord, off the response path.

The request path only appends a `Call` (raw facts: bytes, times, status) to an asyncio
queue. A background task takes whatever has queued up and hands it, as one batch, to a
dedicated writer thread, which measures the texts, builds the RecordIns and calls
`record_usage` (source="proxy"). While one batch is written the next one queues, so
batches grow with the load and nothing waits on a timer.

If the write fails, the batch goes to the spool (usage.proxy.spool) and is replayed
after the next successful write, or by the Celery task `usage.tasks.replay_proxy_spool`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from pydantic import ValidationError

from toki_dashboard.crypto import sha256_hex
from usage import parameters
from usage.deadletters import Unstorable, record_or_set_aside, set_aside
from usage.error_causes import shown_message
from usage.ingestion import NAME_PREFIX
from usage.key_secrets import looks_like_secret
from usage.models import Account, RecordSource
from usage.proxy import measure, spool, sse
from usage.schemas import ErrorBody, RecordIn, UsageBody, describe

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
# After the first call of a batch arrives, the writer waits this long for more: fewer,
# larger transactions cost the server less CPU per record. Records are not on the
# response path, so the wait delays nobody.
BATCH_LINGER_SECONDS = 0.2
MEASURED_BODY_LIMIT = 16 * 1024 * 1024  # larger responses are forwarded but not measured
REPLAY_INTERVAL_SECONDS = 5.0
ACCOUNT_CACHE_SECONDS = 60.0


@dataclass(slots=True)
class Call:
    """What the proxy saw of one recorded call. Texts stay raw bytes here; they are
    measured in the writer thread and dropped with the Call."""

    account_id: int
    kind: str
    endpoint: str
    occurred_at: datetime
    request_body: bytes
    request_id: str = field(default_factory=lambda: f"proxy-{uuid.uuid4().hex}")
    api_key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    request_json: Any = None  # parsed on the request path when it had to be (streams)
    stream: bool = False
    status: int = 0
    events: list[bytes] = field(default_factory=list)  # SSE events as upstream sent them
    body: list[bytes] = field(default_factory=list)  # a non-SSE response body
    body_size: int = 0
    ttft_ms: int | None = None
    latency_ms: int | None = None
    upstream_request_id: str | None = None  # the provider's request id, from a response header
    # An error the proxy answered or noticed itself: (status, type, code, message).
    failure: tuple[int, str, str, str] | None = None

    def keep_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.body_size <= MEASURED_BODY_LIMIT:
            self.body.append(chunk)


def key_value(authorization: str | None) -> str | None:
    """The caller's key as RecordIn.api_key takes it. A key that looks like a secret
    (usage.key_secrets: `sk-…` and the like) goes whole (ingestion keeps only its hash and
    last four); any other value of the header is a secret all the same and must not be
    mistaken for a key's name and stored, so it becomes a name made of its last four and
    a hash prefix."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = (token if scheme.lower() == "bearer" else authorization).strip()
    if not token:
        return None
    if looks_like_secret(token) and len(token) <= 200:
        return token  # ingestion keeps its hash, as for the same secret sent to the API
    name = f"key …{token[-4:]} #{sha256_hex(token)[:12]}" if len(token) >= 8 else f"key #{sha256_hex(token)[:12]}"
    return f"{NAME_PREFIX}{name}"  # a name made here, declared as one


def _usage(value: Any) -> UsageBody | None:
    if not isinstance(value, dict):
        return None
    try:
        return UsageBody.model_validate(value)
    except ValidationError:
        return None


def _error(call: Call, reported: Any, request_texts: list[str]) -> ErrorBody | None:
    """The error of the call: the proxy's own, or the upstream's error body. Its message
    leaves out whatever it repeats of the request's text, and secrets (usage.error_causes)."""
    if call.failure is not None:
        _, kind, code, message = call.failure
        return ErrorBody(type=kind, code=code, message=message)
    if not isinstance(reported, dict):
        return None
    reported_code = reported.get("code")
    reported_message = reported.get("message")
    cleaned = {
        "type": str(reported["type"])[:200] if reported.get("type") is not None else None,
        "code": reported_code
        if isinstance(reported_code, int) and not isinstance(reported_code, bool)
        else (str(reported_code) if reported_code else None),
        "message": shown_message(str(reported_message), request_texts=request_texts) or None
        if reported_message is not None
        else None,
    }
    try:
        return ErrorBody.model_validate(cleaned)
    except ValidationError:
        return ErrorBody(type="unreadable_error")


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def record_fields(call: Call) -> dict[str, Any]:
    """The fields of a finished call's record (RecordIn's input): its lengths and profiles,
    usage, error and times; no text."""
    request = call.request_json if call.request_json is not None else _json(call.request_body)
    if call.events:
        output = measure.stream_output(call.kind, [sse.parse_data(event) for event in call.events])
    elif call.body and call.body_size <= MEASURED_BODY_LIMIT:
        output = measure.response_output(call.kind, _json(b"".join(call.body)))
    else:
        output = measure.Output(pieces=[])
    model = request.get("model") if isinstance(request, dict) else None
    if not isinstance(model, str) or not model:
        model = "unknown"

    lengths: dict[str, Any] = {}
    pieces: list[str] = []
    if isinstance(request, dict):
        pieces, count = measure.context_text(call.kind, request)
        context = measure.text_stats(pieces)
        lengths |= {
            "context_chars": context.chars,
            "context_bytes": context.bytes,
            "context_profile": context.profile,
            "message_count": count,
        }
    answered = call.status < 400 or (call.failure is not None and call.failure[0] in (499, 502, 504))
    if call.kind != measure.EMBEDDINGS and answered and (output.pieces or call.events or call.body):
        # Output as far as it went: a cancelled or cut-off stream logs what was produced.
        produced = measure.text_stats(output.pieces)
        lengths |= {"output_chars": produced.chars, "output_bytes": produced.bytes, "output_profile": produced.profile}

    return {
        **_bare_fields(call),
        "model": model[:200],
        "api_key": key_value(call.api_key),
        "stream": call.stream,
        "error": _error(call, output.error, pieces),
        "usage": _usage(output.usage),
        "ttft_ms": call.ttft_ms,
        "metadata": call.metadata,
        "response_id": _identifier(output.response_id),
        "upstream_request_id": _identifier(call.upstream_request_id),
        "parameters": parameters.names_used(request) if isinstance(request, dict) else None,
        **lengths,
    }


def _bare_fields(call: Call) -> dict[str, Any]:
    """What is known of a call without reading its texts."""
    return {
        "request_id": call.request_id,
        "occurred_at": call.occurred_at,
        "endpoint": call.endpoint[:200],
        "status_code": call.failure[0] if call.failure is not None else call.status,
        "latency_ms": call.latency_ms,
    }


def to_record(call: Call) -> RecordIn | Unstorable:
    """The record of a finished call, or, when it cannot be stored as it is (a model name
    with a NUL byte, say), what is kept of it as a dead letter."""
    try:
        fields = record_fields(call)
    except Exception as exc:
        logger.exception("proxy: could not measure the call %s", call.request_id)
        return Unstorable(call.request_id, _bare_fields(call), f"The call could not be measured: {exc!r}")
    try:
        return RecordIn.model_validate(fields)
    except ValidationError as exc:
        return Unstorable(call.request_id, fields, "Invalid: " + describe(exc.errors(include_url=False))[1])


def _identifier(value: Any) -> str | None:
    """An id the provider gave the call, as RecordIn takes it (1 to 200 storable characters);
    anything else is left out rather than cost the call its record."""
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()[:200]
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value or None


# --- The writer thread -----------------------------------------------------------------------

_accounts: dict[int, tuple[Account, float]] = {}  # used by the writer thread only


def _account(account_id: int) -> Account | None:
    cached = _accounts.get(account_id)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        _accounts.pop(account_id, None)
    else:
        _accounts[account_id] = (account, time.monotonic() + ACCOUNT_CACHE_SECONDS)
    return account


def store_records(records: spool.Batch) -> None:
    """Write records through the one ingestion path, and dead letters of those that cannot be
    stored as they are; raises when the database is unavailable."""
    # A long-lived thread never sees request_started, which would drop a broken connection:
    # check it here instead (a cheap round trip on PostgreSQL, nothing on SQLite), never
    # inside a caller's transaction.
    if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
        connection.close()
    by_account: dict[int, list[RecordIn | Unstorable]] = {}
    for account_id, record in records:
        by_account.setdefault(account_id, []).append(record)
    for account_id, batch in sorted(by_account.items()):
        account = _account(account_id)
        if account is None:
            logger.error("proxy: account %s no longer exists; %d record(s) dropped", account_id, len(batch))
            continue
        valid = [record for record in batch if isinstance(record, RecordIn)]
        record_or_set_aside(account, list(enumerate(valid)), source=RecordSource.PROXY)
        set_aside(account, RecordSource.PROXY, [record for record in batch if isinstance(record, Unstorable)])


class Writer:
    """Runs in the writer thread only: builds records and stores or spools them."""

    def __init__(self) -> None:
        self._next_replay = 0.0

    def write(self, calls: Sequence[Call]) -> None:
        records = [(call.account_id, to_record(call)) for call in calls]
        if not records:
            return
        try:
            store_records(records)
        except Exception as exc:
            # Whatever went wrong, the records are kept; the connection is dropped so the
            # next attempt starts on a fresh one.
            logger.warning(
                "proxy: database write failed (%s: %s); %d record(s) spooled", type(exc).__name__, exc, len(records)
            )
            self._drop_connection()
            spool.append(records)
            self._next_replay = time.monotonic() + REPLAY_INTERVAL_SECONDS
            return
        if time.monotonic() >= self._next_replay:
            self._next_replay = time.monotonic() + REPLAY_INTERVAL_SECONDS
            if spool.pending():
                try:
                    spool.replay(store_records)
                except Exception:
                    logger.exception("proxy: spool replay failed")
                    self._drop_connection()

    @staticmethod
    def _drop_connection() -> None:
        try:
            connection.close()
        except Exception:  # a connection that is already broken may fail to close
            logger.debug("proxy: closing a failed connection", exc_info=True)

    @staticmethod
    def close() -> None:
        _accounts.clear()
        connection.close()


class Recorder:
    """The asyncio side: a queue the request path appends to without waiting, drained in
    batches by one background task into the writer thread."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Call] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toki-proxy-writer")
        self._writer = Writer()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def submit(self, call: Call) -> None:
        if self._closed:
            # A call that ended after shutdown began: nothing drains the queue any more,
            # and the database may not be used from the event loop, so keep it on disk.
            try:
                spool.append([(call.account_id, to_record(call))])
            except Exception:
                logger.exception("proxy: could not keep the record of %s", call.request_id)
            return
        self._queue.put_nowait(call)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="toki-proxy-recorder")

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < MAX_BATCH:
                await asyncio.sleep(BATCH_LINGER_SECONDS)
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await loop.run_in_executor(self._executor, self._writer.write, batch)
            except Exception:
                logger.exception("proxy: recorder batch failed")
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def flush(self) -> None:
        """Wait until everything submitted so far has been written (or spooled)."""
        await self._queue.join()

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)
