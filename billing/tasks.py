"""Celery tasks of the billing app: load ids, call a service."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings

from billing import alerts, model_sync, recompute, sync
from billing.budgets import gate
from billing.models import AlertDelivery, DeliveryStatus, SyncTrigger
from billing.notify import deliveries
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
    records = recompute.refresh_allocations(account, full=full).records
    if records:
        gate.schedule_publish(account.pk, delay=0)  # paid moved: enforced paid budgets may have run out
    return records


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
        alerts.schedule_evaluation(account.pk)  # balances and sync health changed: check the alert rules soon
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
    """Evaluate an account's alert rules; returns how many notifications it made."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    return sum(len(outcome.notifications) for outcome in alerts.evaluate_account(account))


@shared_task
def evaluate_all_alerts() -> int:
    """Run every 5 minutes by beat: every account with an enabled rule, and deliveries a lost task left."""
    alerts.resend_stuck()
    account_ids = alerts.accounts_with_rules()
    for account_id in account_ids:
        evaluate_account_alerts.delay(account_id)
    return len(account_ids)


@shared_task(bind=True, max_retries=None)
def send_alert_delivery(self: Task, delivery_id: int) -> str:
    """One more attempt at a delivery (email, webhook or chat); a failure is retried with
    exponential backoff until ALERT_DELIVERY_MAX_ATTEMPTS attempts (counted on the delivery)."""
    status = deliveries.deliver(delivery_id)
    if status == DeliveryStatus.FAILED:
        attempts = AlertDelivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=deliveries.retry_delay(attempts))
    return status


# --- Budgets -----------------------------------------------------------------------------


@shared_task
def publish_budget_gate(account_id: int) -> int:
    """Recompute which enforced budgets are exhausted and hand the state to the proxy."""
    account = Account.objects.filter(pk=account_id).first()
    return 0 if account is None else len(gate.publish(account).blocks)


@shared_task
def publish_all_budget_gates() -> int:
    """Run every minute by beat: periods reset, paid catches up with the allocations."""
    account_ids = gate.accounts_with_enforced_budgets()
    for account_id in account_ids:
        publish_budget_gate.delay(account_id)
    return len(account_ids)


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
