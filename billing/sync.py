"""Provider sync (a write service): read the balance, pull per-request logs, store both.

One attempt is `sync_account`. It claims the account (one sync at a time), calls
the adapter over HTTP with no database transaction open, sends log rows through
`usage.services.record_usage` (source "sync") a batch at a time, and only when
everything answered stores a BalanceSnapshot, moves the log cursor and records the
success. Failures are recorded on the SyncRun and the account's SyncState:

- ProviderUnavailable (timeouts, 429, 5xx) is re-raised for the task to retry;
- CredentialsRejected (401/403) marks the credentials invalid: no retry, and the
  scheduler skips the account until its credentials change;
- BadAnswer (malformed JSON, `success: false`…) stores no snapshot and leaves the
  cursor alone; the next scheduled sync tries again.

Log rows already stored are never overwritten: a row read twice (overlapping
windows, shifting pages) is a duplicate, deduplicated on `request_id` or, without
one, on the identity tuple `usage.importers.newapi_request_id` hashes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import audit, selectors
from billing.audit import Actor
from billing.models import BalanceSnapshot, SyncOutcome, SyncRun, SyncState, SyncTrigger
from billing.providers import (
    REQUIRED_CREDENTIALS,
    BadAnswer,
    BalanceReading,
    Connection,
    CredentialsRejected,
    NotConfigured,
    ProviderUnavailable,
    adapter_for,
    http,
)
from billing.recompute import refresh_allocations
from billing.signals import balance_drift
from toki_dashboard.crypto import sha256_hex
from usage.deadletters import record_or_set_aside
from usage.importers import BadField, newapi_record
from usage.ingestion import name_fingerprint
from usage.models import Account, ApiKey, Provider, RecordSource
from usage.wire import validate_records

logger = logging.getLogger(__name__)

# The next read starts this long before the end of the last one: rows written late
# with an earlier created_at are still seen; the overlap comes back as duplicates.
OVERLAP_SECONDS = 300
INGEST_BATCH = 1000
MAX_PROBLEMS = 5
# A claim older than this belongs to a worker that died.
STALE_CLAIM = timedelta(minutes=30)
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def as_json(value: Any) -> Any:
    """An answer read with exact decimals, back to plain JSON numbers for keeping as raw payload."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


def credentials_digest(account: Account) -> str:
    return sha256_hex(account.credentials_encrypted) if account.credentials_encrypted else ""


def state_of(account: Account) -> SyncState:
    return SyncState.objects.get_or_create(account=account)[0]


def can_schedule(account: Account, state: SyncState) -> bool:
    """Scheduled syncs skip manual accounts, accounts without credentials, and credentials
    the provider rejected (until they are changed)."""
    if account.provider == Provider.MANUAL or not account.credentials_encrypted or account.sync_interval_minutes == 0:
        return False
    return state.credentials_valid or state.rejected_credentials != credentials_digest(account)


def claim_due_accounts(*, now: datetime | None = None) -> list[int]:
    """Ids of accounts whose sync interval has elapsed, each claimed once however many
    dispatchers run (a conditional update on last_dispatched_at)."""
    now = now or timezone.now()
    due: list[int] = []
    candidates = Account.objects.exclude(provider=Provider.MANUAL).exclude(credentials_encrypted="").order_by("pk")
    for account in candidates:
        state = state_of(account)
        if not can_schedule(account, state):
            continue
        previous = state.last_dispatched_at
        # After failures the interval stretches (×2, then ×4), so that a provider that is
        # down is not asked again while the retries of the last sync are still running.
        interval = timedelta(minutes=account.sync_interval_minutes) * min(2**state.consecutive_failures, 4)
        if previous is not None and previous + interval > now:
            continue
        claimed = SyncState.objects.filter(pk=state.pk, last_dispatched_at=previous).update(last_dispatched_at=now)
        if claimed:
            due.append(account.pk)
    return due


def _claim(state: SyncState, now: datetime) -> bool:
    free = Q(running_since__isnull=True) | Q(running_since__lt=now - STALE_CLAIM)
    return SyncState.objects.filter(free, pk=state.pk).update(running_since=now) == 1


def _release(state: SyncState) -> None:
    SyncState.objects.filter(pk=state.pk).update(running_since=None)


@dataclass
class _Tally:
    rows_read: int = 0
    ingested: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def _store(account: Account, records: list[dict[str, Any]], tally: _Tally) -> None:
    valid, rejected = validate_records(records)
    for rejection in rejected:
        tally.problem(f"{rejection['field']}: {rejection['message']}")
    result = record_or_set_aside(account, valid, source=RecordSource.SYNC)
    tally.ingested += result.accepted
    tally.duplicates += result.duplicates
    tally.conflicts += len(result.conflicts)
    for kept in result.set_aside:  # valid rows the database refused: dead letters to replay
        tally.problem(f"request {kept['request_id']!r} kept aside: {kept['reason']}")


def ingest_log_rows(account: Account, pages: Iterable[list[Any]], tally: _Tally) -> None:
    """Console log rows → records (the importer's mapping) → record_usage, a batch at a time.
    Pages are fetched lazily, so no transaction is open while the next one is requested."""
    batch: list[dict[str, Any]] = []
    for page in pages:
        for row in page:
            tally.rows_read += 1
            try:
                record = newapi_record(row)
            except BadField as exc:
                tally.problem(str(exc))
                continue
            if record is not None:
                batch.append(record)
        if len(batch) >= INGEST_BATCH:
            _store(account, batch, tally)
            batch = []
    if batch:
        _store(account, batch, tally)


@dataclass
class _Fetched:
    reading: BalanceReading | None = None
    window: tuple[int, int] | None = None
    key_statuses: dict[str, str] = field(default_factory=dict)


def _fetch(account: Account, state: SyncState, now: datetime, tally: _Tally, secrets: list[str]) -> _Fetched:
    adapter = adapter_for(account.provider)
    credentials = account.get_credentials()
    # Values long enough to be secrets (not the console's numeric user id) are scrubbed from messages.
    secrets.extend(value for value in map(str, credentials.values()) if len(value) >= MIN_SECRET_LENGTH)
    if missing := [name for name in REQUIRED_CREDENTIALS.get(account.provider, ()) if not credentials.get(name)]:
        raise NotConfigured(f"The account's credentials lack {', '.join(missing)}.")
    fetched = _Fetched()
    with http.client() as client:
        connection = Connection(account.base_url, account.currency, credentials, client)
        fetched.reading = adapter.balance(connection)
        if adapter.reads_logs:
            end = int(now.timestamp())
            lookback = int(timedelta(days=settings.BILLING_SYNC_INITIAL_LOOKBACK_DAYS).total_seconds())
            start = state.cursor if state.cursor is not None else end - lookback
            ingest_log_rows(account, adapter.log_pages(connection, start=start, end=end), tally)
            fetched.window = (start, end)
            fetched.key_statuses = adapter.key_statuses(connection)
    return fetched


def sync_account(account: Account, *, trigger: str = SyncTrigger.SCHEDULE, attempt: int = 1) -> SyncRun | None:
    """One attempt; None when another sync of the account is running. Raises
    ProviderUnavailable (after recording it) so that the caller can retry."""
    now = timezone.now()
    state = state_of(account)
    if not _claim(state, now):
        return None
    state.refresh_from_db()  # the cursor as the previous sync left it
    run = SyncRun.objects.create(
        account=account,
        provider=account.provider,
        trigger=trigger,
        attempt=attempt,
        started_at=now,
        cursor_before=state.cursor,
    )
    started = time.monotonic()
    tally = _Tally()
    secrets: list[str] = []
    try:
        fetched = _fetch(account, state, now, tally, secrets)
    except CredentialsRejected as exc:
        _failed(account, run, started, tally, SyncOutcome.CREDENTIALS_REJECTED, scrub(str(exc), secrets))
        _reject_credentials(account, scrub(str(exc), secrets))
    except (BadAnswer, NotConfigured) as exc:
        outcome = SyncOutcome.BAD_ANSWER if isinstance(exc, BadAnswer) else SyncOutcome.NOT_CONFIGURED
        _failed(account, run, started, tally, outcome, scrub(str(exc), secrets))
    except ProviderUnavailable as exc:
        _failed(account, run, started, tally, SyncOutcome.UNAVAILABLE, scrub(str(exc), secrets))
        raise
    except Exception as exc:
        # Only the type: an unexpected message could quote what it was handed.
        _failed(account, run, started, tally, SyncOutcome.ERROR, f"internal error ({type(exc).__name__})")
        raise
    else:
        _succeeded(account, run, started, tally, fetched)
    finally:
        _release(state)
    run.refresh_from_db()
    if run.ok:
        refresh_allocations(account)
        check_drift(account)
    return run


def _close_run(run: SyncRun, started: float, tally: _Tally, outcome: str, error: str) -> None:
    run.finished_at = timezone.now()
    run.duration_ms = round((time.monotonic() - started) * 1000)
    run.outcome = outcome
    run.error = error
    run.rows_read, run.records_ingested = tally.rows_read, tally.ingested
    run.duplicates, run.conflicts, run.rejected = tally.duplicates, tally.conflicts, tally.rejected
    run.save()


def _failed(account: Account, run: SyncRun, started: float, tally: _Tally, outcome: str, error: str) -> None:
    logger.warning("sync of %s failed (%s): %s", account.slug, outcome, error)
    with transaction.atomic():
        _close_run(run, started, tally, outcome, error)
        state = SyncState.objects.select_for_update().get(account=account)
        state.last_attempt_at = run.finished_at
        state.last_error_at = run.finished_at
        state.last_error = error
        state.last_duration_ms = run.duration_ms
        state.consecutive_failures += 1
        state.save()


def _reject_credentials(account: Account, error: str) -> None:
    with transaction.atomic():
        state = SyncState.objects.select_for_update().get(account=account)
        before = audit.snapshot(state, ("credentials_valid", "credentials_error"))
        state.credentials_valid = False
        state.credentials_error = error
        state.rejected_credentials = credentials_digest(account)
        state.save()
        audit.record(
            Actor.system("provider sync"),
            "credentials.rejected",
            state,
            account=account,
            before=before,
            after=audit.snapshot(state, ("credentials_valid", "credentials_error")),
        )


def _succeeded(account: Account, run: SyncRun, started: float, tally: _Tally, fetched: _Fetched) -> None:
    problems = "; ".join(tally.problems)
    with transaction.atomic():
        state = SyncState.objects.select_for_update().get(account=account)
        if fetched.window is not None:
            start, end = fetched.window
            state.cursor = max(start, end - OVERLAP_SECONDS)
            run.cursor_after = state.cursor
        _close_run(
            run, started, tally, SyncOutcome.SUCCESS, f"{tally.rejected} rows skipped: {problems}" if problems else ""
        )
        reading = fetched.reading
        if reading is not None:
            BalanceSnapshot.objects.create(
                account=account,
                taken_at=run.started_at,
                balance=reading.balance,
                currency=reading.currency,
                token_balance=reading.token_balance,
                used=reading.used,
                request_count=reading.request_count,
                raw=as_json(reading.raw),
                source=account.provider,
                sync_run=run,
            )
        for name, status in fetched.key_statuses.items():
            ApiKey.objects.filter(account=account, fingerprint=name_fingerprint(name)).exclude(
                provider_status=status
            ).update(provider_status=status)
        state.last_attempt_at = run.finished_at
        state.last_success_at = run.finished_at
        state.last_duration_ms = run.duration_ms
        state.consecutive_failures = 0
        state.credentials_valid = True
        state.credentials_error = ""
        state.rejected_credentials = ""
        state.save()


def check_drift(account: Account, *, now: datetime | None = None) -> selectors.Reconciliation | None:
    """Reconcile the last BILLING_RECONCILIATION_HOURS; note the drift and signal one over the threshold."""
    now = now or timezone.now()
    result = selectors.reconcile(account, start=now - timedelta(hours=settings.BILLING_RECONCILIATION_HOURS), end=now)
    state = state_of(account)
    state.drift = result.drift if result else None
    state.drift_threshold = result.threshold if result else None
    state.drift_exceeded = bool(result and result.exceeds_threshold)
    state.drift_checked_at = now
    state.save(update_fields=["drift", "drift_threshold", "drift_exceeded", "drift_checked_at"])
    if result is not None and result.exceeds_threshold:
        logger.warning(
            "balance drift on %s: %s %s over %s..%s (threshold %s)",
            account.slug,
            result.drift,
            account.currency,
            result.start.isoformat(),
            result.end.isoformat(),
            result.threshold,
        )
        balance_drift.send(sender=SyncState, account=account, reconciliation=result)
    return result


# --- Retries -------------------------------------------------------------------------


def retry_delay(retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff from BILLING_SYNC_RETRY_BASE_SECONDS, at least what Retry-After asks,
    at most BILLING_SYNC_RETRY_MAX_SECONDS."""
    base = float(settings.BILLING_SYNC_RETRY_BASE_SECONDS)
    cap = float(settings.BILLING_SYNC_RETRY_MAX_SECONDS)
    return min(max(base * 2**retries, retry_after or 0.0), cap)


def sync_with_retries(
    account: Account,
    *,
    trigger: str = SyncTrigger.COMMAND,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncRun | None:
    """Attempts until one is not a ProviderUnavailable, or the retries are spent (for commands)."""
    retries = int(settings.BILLING_SYNC_MAX_RETRIES)
    for attempt in range(retries + 1):
        try:
            return sync_account(account, trigger=trigger, attempt=attempt + 1)
        except ProviderUnavailable as exc:
            if attempt == retries:
                return SyncRun.objects.filter(account=account).order_by("-started_at", "-id").first()
            sleep(retry_delay(attempt, exc.retry_after))
    return None
