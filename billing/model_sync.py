"""Model catalogue sync (a write service): read an account's model list and prices from its
provider, and store them through `usage.catalogue.services`.

One attempt is `sync_models`. It claims the account's catalogue (one sync at a time),
calls the adapter over HTTP with no database transaction open, then applies the whole
listing in one transaction. A failure is recorded on its CatalogueSync row and changes
nothing else, sorted the way the provider sync sorts them: ProviderUnavailable
(timeouts, 429, 5xx) is re-raised for the task to retry; CredentialsRejected (401/403)
stops the schedule for the account until its credentials change; BadAnswer (malformed
JSON, an error body, an empty list) and NotConfigured wait for the next run.

What each provider reads (see `billing.providers.model_list` and `.newapi_pricing`):
`openai_billing` and `manual` read `{base}/models` with the `api_key` credential (a
manual account without one is not scheduled); `newapi_console` reads the console's
public `/api/pricing` for models and prices, and `{base}/models` too when a relay key
is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings

from billing.providers import (
    BadAnswer,
    Connection,
    CredentialsRejected,
    NotConfigured,
    ProviderUnavailable,
    adapter_for,
    http,
)
from billing.sync import MIN_SECRET_LENGTH, credentials_digest, retry_delay, scrub
from usage.catalogue import services
from usage.catalogue.listing import Listing
from usage.catalogue.models import CatalogueOutcome, CatalogueSync, CatalogueTrigger
from usage.models import Account, Provider

logger = logging.getLogger(__name__)


def lists_models(account: Account) -> bool:
    """Whether the schedule reads this account's model list: a New API console always (its
    pricing list is public), other providers with a relay key; never a paused account."""
    if account.sync_interval_minutes == 0:
        return False
    if account.provider == Provider.NEWAPI_CONSOLE:
        return True
    return bool(account.credentials_encrypted and account.get_credentials().get("api_key"))


def accounts_due() -> list[int]:
    """Ids of the accounts the schedule syncs, skipping credentials the provider rejected
    until they are changed."""
    due = []
    for account in Account.objects.order_by("pk"):
        if not lists_models(account):
            continue
        last = CatalogueSync.objects.filter(account=account, finished_at__isnull=False).order_by("-started_at").first()
        rejected = last is not None and last.outcome == CatalogueOutcome.CREDENTIALS_REJECTED
        if rejected and last is not None and last.credentials_digest == credentials_digest(account):
            continue
        due.append(account.pk)
    return due


def _fetch(account: Account, secrets: list[str]) -> Listing:
    adapter = adapter_for(account.provider)
    credentials = account.get_credentials()
    secrets.extend(value for value in map(str, credentials.values()) if len(value) >= MIN_SECRET_LENGTH)
    with http.client() as client:
        return adapter.model_listing(Connection(account.base_url, account.currency, credentials, client))


def sync_models(account: Account, *, trigger: str = CatalogueTrigger.SCHEDULE) -> CatalogueSync | None:
    """One attempt; None when another sync of the account's catalogue is running. Raises
    ProviderUnavailable (after recording it) so that the caller can retry."""
    run = services.start_sync(account, trigger=trigger, credentials_digest=credentials_digest(account))
    if run is None:
        return None
    secrets: list[str] = []
    try:
        listing = _fetch(account, secrets)
    except CredentialsRejected as exc:
        _failed(account, run, CatalogueOutcome.CREDENTIALS_REJECTED, scrub(str(exc), secrets))
    except (BadAnswer, NotConfigured) as exc:
        outcome = CatalogueOutcome.BAD_ANSWER if isinstance(exc, BadAnswer) else CatalogueOutcome.NOT_CONFIGURED
        _failed(account, run, outcome, scrub(str(exc), secrets))
    except ProviderUnavailable as exc:
        _failed(account, run, CatalogueOutcome.UNAVAILABLE, scrub(str(exc), secrets))
        raise
    except Exception as exc:
        # Only the type: an unexpected message could quote what it was handed.
        _failed(account, run, CatalogueOutcome.ERROR, f"internal error ({type(exc).__name__})")
        raise
    else:
        services.apply_listing(run, listing)
    return run


def _failed(account: Account, run: CatalogueSync, outcome: str, error: str) -> None:
    logger.warning("model catalogue sync of %s failed (%s): %s", account.slug, outcome, error)
    services.finish_failed(run, outcome, error)


def sync_with_retries(
    account: Account,
    *,
    trigger: str = CatalogueTrigger.COMMAND,
    sleep: Callable[[float], None] = time.sleep,
) -> CatalogueSync | None:
    """Attempts until one is not a ProviderUnavailable, or the retries are spent (for commands)."""
    retries = int(settings.BILLING_SYNC_MAX_RETRIES)
    run = None
    for attempt in range(retries + 1):
        try:
            return sync_models(account, trigger=trigger)
        except ProviderUnavailable as exc:
            run = CatalogueSync.objects.filter(account=account).order_by("-started_at", "-id").first()
            if attempt < retries:
                sleep(retry_delay(attempt, exc.retry_after))
    return run
