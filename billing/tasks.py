"""Celery tasks of the billing app: load ids, call a service."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings

from billing import model_sync, recompute, sync
from billing.models import SyncTrigger
from billing.providers import ProviderUnavailable
from usage.catalogue.models import CatalogueTrigger
from usage.models import Account

logger = logging.getLogger(__name__)

# A refresh waits for a running repricing at most this many times (15 s apart).
REPRICING_WAITS = 240


@shared_task(bind=True, max_retries=None)
def refresh_allocations(self: Task, account_id: int, full: bool = False) -> int:
    """Bring an account's allocations up to date; returns how many records were recomputed."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    if recompute.repricing_in_progress(account) and self.request.retries < REPRICING_WAITS:
        raise self.retry(countdown=15)
    return recompute.refresh_allocations(account, full=full).records


@shared_task
def refresh_all_allocations(full: bool = False) -> int:
    """The periodic safety net: expiries that passed without new records, anything a lost task missed."""
    for account_id in Account.objects.order_by("pk").values_list("pk", flat=True):
        refresh_allocations.delay(account_id, full)
    return Account.objects.count()


@shared_task(bind=True, max_retries=None)
def sync_account(self: Task, account_id: int, trigger: str = SyncTrigger.SCHEDULE) -> str:
    """One sync attempt; timeouts, 429 and 5xx are retried with exponential backoff."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return "no such account"
    try:
        run = sync.sync_account(account, trigger=trigger, attempt=self.request.retries + 1)
    except ProviderUnavailable as exc:
        if self.request.retries >= settings.BILLING_SYNC_MAX_RETRIES:
            logger.warning("sync of %s gave up after %d attempts", account.slug, self.request.retries + 1)
            return "gave up"
        raise self.retry(countdown=sync.retry_delay(self.request.retries, exc.retry_after)) from None
    if run is not None:
        from billing.alerts import schedule_evaluation

        schedule_evaluation(account.pk)  # balances and sync health changed: check the alert rules soon
    return run.outcome if run is not None else "already running"


@shared_task
def dispatch_due_syncs() -> int:
    """Run every minute by beat: enqueue the accounts whose sync interval has elapsed."""
    due = sync.claim_due_accounts()
    for account_id in due:
        sync_account.delay(account_id, SyncTrigger.SCHEDULE)
    return len(due)


# --- Alerts ------------------------------------------------------------------------------


@shared_task
def evaluate_account_alerts(account_id: int) -> int:
    """Evaluate an account's alert rules; returns how many emails it queued."""
    from billing import alerts

    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    return sum(len(outcome.emails) for outcome in alerts.evaluate_account(account))


@shared_task
def evaluate_all_alerts() -> int:
    """Run every 5 minutes by beat: every account with an enabled rule, and emails a lost task left."""
    from billing import alerts

    alerts.resend_stuck()
    account_ids = alerts.accounts_with_rules()
    for account_id in account_ids:
        evaluate_account_alerts.delay(account_id)
    return len(account_ids)


@shared_task(bind=True, max_retries=None)
def send_alert_email(self: Task, email_id: int) -> str:
    """One more delivery attempt; a failure is retried with exponential backoff until
    ALERT_EMAIL_MAX_ATTEMPTS attempts (counted on the AlertEmail) have failed."""
    from billing import alerts
    from billing.models import AlertEmail, AlertEmailStatus

    status = alerts.deliver(email_id)
    if status == AlertEmailStatus.FAILED:
        attempts = AlertEmail.objects.filter(pk=email_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=alerts.retry_delay(attempts))
    return status


# --- Model catalogue ---------------------------------------------------------------------


@shared_task(bind=True, max_retries=None)
def sync_model_catalogue(self: Task, account_id: int, trigger: str = CatalogueTrigger.SCHEDULE) -> str:
    """One catalogue sync attempt; timeouts, 429 and 5xx are retried with exponential backoff."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return "no such account"
    try:
        run = model_sync.sync_models(account, trigger=trigger)
    except ProviderUnavailable as exc:
        if self.request.retries >= settings.BILLING_SYNC_MAX_RETRIES:
            logger.warning(
                "model catalogue sync of %s gave up after %d attempts", account.slug, self.request.retries + 1
            )
            return "gave up"
        raise self.retry(countdown=sync.retry_delay(self.request.retries, exc.retry_after)) from None
    return run.outcome if run is not None else "already running"


@shared_task
def dispatch_model_syncs() -> int:
    """Run by beat every MODEL_CATALOGUE_SYNC_MINUTES: a catalogue sync per account that lists models."""
    due = model_sync.accounts_due()
    for account_id in due:
        sync_model_catalogue.delay(account_id, CatalogueTrigger.SCHEDULE)
    return len(due)
