"""How a sync fails: timeouts, 429 and 5xx are retried with backoff; 401/403 stop and mark
the credentials invalid; malformed answers and `success: false` are errors that overwrite
nothing. Credentials never appear in what is stored or logged."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import sync, tasks
from billing.models import AuditEvent, BalanceSnapshot, SyncOutcome, SyncRun, SyncState
from billing.providers import ProviderUnavailable
from tests.billing.fake_console import ACCESS_TOKEN, RELAY_KEY, LogRow
from usage.models import UsageRecord


def consume(created_at: int, prompt: int) -> LogRow:
    return LogRow(created_at=created_at, model_name="gpt-4o", prompt_tokens=prompt, completion_tokens=10, quota=99)


@pytest.fixture
def synced_once(newapi_account, console) -> SyncRun:
    """A first successful sync, so that a failure has something it must not overwrite."""
    console.add_logs(consume(int(timezone.now().timestamp()) - 60, 100))
    run = sync.sync_account(newapi_account)
    assert run.ok
    console.state.quota = 1  # what a later, failed sync must not store
    return run


def state(account) -> SyncState:
    return SyncState.objects.get(account=account)


@pytest.mark.parametrize(
    ("path", "mode", "message"),
    [
        ("/api/user/self", "timeout", "timed out"),
        ("/api/user/self", "429", "HTTP 429"),
        ("/api/status", "500", "HTTP 500"),
        ("/api/log/self", "502", "HTTP 502"),
    ],
)
def test_unavailable_answers_are_raised_for_a_retry_and_change_nothing(
    newapi_account, console, synced_once, path, mode, message
):
    console.fail(path, mode)

    with pytest.raises(ProviderUnavailable, match=message):
        sync.sync_account(newapi_account)

    run = SyncRun.objects.order_by("-pk").first()
    assert (run.outcome, run.ok) == (SyncOutcome.UNAVAILABLE, False)
    assert message in run.error and run.duration_ms is not None
    assert BalanceSnapshot.objects.count() == 1
    assert state(newapi_account).cursor == synced_once.cursor_after
    assert state(newapi_account).last_error == run.error
    assert state(newapi_account).last_success_at == synced_once.finished_at
    assert state(newapi_account).running_since is None


def test_a_429_passes_on_how_long_to_wait(newapi_account, console):
    console.fail("/api/user/self", "429")

    with pytest.raises(ProviderUnavailable) as raised:
        sync.sync_account(newapi_account)

    assert raised.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("path", "mode", "message"),
    [
        ("/api/user/self", "truncated", "invalid JSON"),
        ("/api/user/self", "success_false", "系统繁忙"),
        ("/api/status", "html", "invalid JSON"),
        ("/api/log/self", "success_false", "/api/log/self failed"),
        ("/api/token/", "truncated", "invalid JSON"),
    ],
)
def test_malformed_or_failed_answers_are_sync_errors_that_overwrite_nothing(
    newapi_account, console, synced_once, path, mode, message
):
    console.fail(path, mode)

    run = sync.sync_account(newapi_account)

    assert run.outcome == SyncOutcome.BAD_ANSWER
    assert message in run.error
    assert list(BalanceSnapshot.objects.values_list("balance", flat=True)) == [Decimal("50")]
    assert state(newapi_account).cursor == synced_once.cursor_after
    assert state(newapi_account).consecutive_failures == 1
    assert state(newapi_account).credentials_valid


def test_a_failure_on_a_later_page_keeps_the_cursor_and_the_next_sync_reads_again(newapi_account, console):
    now = int(timezone.now().timestamp())
    console.add_logs(*(consume(now - 200 + i, 100 + i) for i in range(150)))
    pages = iter(range(10))

    def fail_second_page(page: int) -> None:
        if next(pages) == 0:
            console.fail("/api/log/self", "truncated")

    console.state.between_pages = fail_second_page
    failed = sync.sync_account(newapi_account)
    console.state.between_pages = None

    assert failed.outcome == SyncOutcome.BAD_ANSWER
    assert state(newapi_account).cursor is None
    assert not BalanceSnapshot.objects.exists()

    again = sync.sync_account(newapi_account)

    # Whatever the failed sync had stored comes back as duplicates, the rest is added.
    assert again.ok and again.records_ingested + again.duplicates == 150
    assert again.duplicates == failed.records_ingested
    assert UsageRecord.objects.filter(account=newapi_account).count() == 150


@pytest.mark.parametrize("mode", ["401", "403"])
def test_rejected_credentials_stop_the_sync_and_mark_them_invalid(newapi_account, console, mode):
    console.fail("/api/user/self", mode)

    run = sync.sync_account(newapi_account)  # not raised: there is nothing to retry

    assert run.outcome == SyncOutcome.CREDENTIALS_REJECTED
    current = state(newapi_account)
    assert not current.credentials_valid and f"HTTP {mode}" in current.credentials_error
    assert AuditEvent.objects.filter(action="credentials.rejected").count() == 1
    assert sync.claim_due_accounts() == []  # the scheduler leaves the account alone


def test_new_credentials_make_a_rejected_account_eligible_again(newapi_account, console):
    console.fail("/api/user/self", "401")
    sync.sync_account(newapi_account)
    assert sync.claim_due_accounts() == []

    newapi_account.set_credentials({"access_token": ACCESS_TOKEN, "user_id": "4242", "note": "rotated"})
    newapi_account.save()

    assert sync.claim_due_accounts() == [newapi_account.pk]
    assert sync.sync_account(newapi_account).ok
    assert state(newapi_account).credentials_valid


def test_a_wrong_token_is_a_401_from_the_console(newapi_account, console):
    newapi_account.set_credentials({"access_token": "not-the-token-123", "user_id": "4242"})
    newapi_account.save()

    assert sync.sync_account(newapi_account).outcome == SyncOutcome.CREDENTIALS_REJECTED


def test_missing_credentials_are_reported_without_calling_the_console(account, console, fast_sync):
    account.provider = "newapi_console"
    account.base_url = console.base_url
    account.set_credentials({"access_token": ACCESS_TOKEN})
    account.save()

    run = sync.sync_account(account)

    assert run.outcome == SyncOutcome.NOT_CONFIGURED and "user_id" in run.error
    assert console.state.requests == []


def test_credentials_echoed_by_the_provider_are_never_stored_or_logged(newapi_account, console, caplog):
    console.fail("/api/user/self", "echo_token")

    with caplog.at_level(logging.DEBUG):
        run = sync.sync_account(newapi_account)

    assert run.outcome == SyncOutcome.CREDENTIALS_REJECTED
    stored = [run.error, state(newapi_account).credentials_error, state(newapi_account).last_error]
    stored += [str(e.after) for e in AuditEvent.objects.all()]
    assert all(ACCESS_TOKEN not in text for text in stored)
    assert "[redacted]" in run.error
    assert ACCESS_TOKEN not in caplog.text
    assert ACCESS_TOKEN not in newapi_account.credentials_encrypted
    assert newapi_account.credentials_hint == "…cdef"


def test_the_command_retries_with_backoff_until_the_console_answers(newapi_account, console, settings):
    console.fail("/api/status", "500", "timeout")
    sleeps: list[float] = []

    run = sync.sync_with_retries(newapi_account, sleep=sleeps.append)

    assert run.ok and run.attempt == 3
    assert sleeps == [0.05, 0.1]
    outcomes = list(SyncRun.objects.order_by("pk").values_list("outcome", flat=True))
    assert outcomes == [SyncOutcome.UNAVAILABLE, SyncOutcome.UNAVAILABLE, SyncOutcome.SUCCESS]


def test_backoff_doubles_honours_retry_after_and_is_capped(fast_sync):
    assert [sync.retry_delay(n) for n in range(4)] == [0.05, 0.1, 0.2, 0.2]
    assert sync.retry_delay(0, retry_after=0.15) == 0.15


def test_the_task_retries_unavailable_answers_and_gives_up_after_the_last_retry(newapi_account, console, settings):
    settings.BILLING_SYNC_MAX_RETRIES = 2
    console.fail("/api/status", "500", "500", "500")

    outcome = tasks.sync_account.apply(args=[newapi_account.pk]).get()

    assert outcome == "gave up"
    assert list(SyncRun.objects.order_by("pk").values_list("attempt", flat=True)) == [1, 2, 3]
    assert state(newapi_account).consecutive_failures == 3


def test_the_task_succeeds_on_a_retry(newapi_account, console):
    console.fail("/api/user/self", "429")

    outcome = tasks.sync_account.apply(args=[newapi_account.pk]).get()

    assert outcome == SyncOutcome.SUCCESS
    assert state(newapi_account).consecutive_failures == 0


def test_a_second_sync_of_the_same_account_waits_its_turn(newapi_account):
    SyncState.objects.update_or_create(account=newapi_account, defaults={"running_since": timezone.now()})

    assert sync.sync_account(newapi_account) is None
    assert not SyncRun.objects.exists()


@pytest.mark.usefixtures("relay_account")
class TestOpenAIBilling:
    def test_the_balance_is_the_hard_limit_less_the_usage_in_cents(self, relay_account, console):
        run = sync.sync_account(relay_account)

        assert run.ok, run.error
        snapshot = BalanceSnapshot.objects.get()
        assert (snapshot.balance, snapshot.used, snapshot.currency) == (Decimal("9.376"), Decimal("3.124"), "USD")
        assert snapshot.raw["subscription"]["hard_limit_usd"] == 12.5
        sent = [h["Authorization"] for h in console.headers_sent()]
        assert sent and set(sent) == {f"Bearer {RELAY_KEY}"}

    def test_an_error_object_with_http_200_is_a_sync_error(self, relay_account, console):
        console.fail("/v1/dashboard/billing/usage", "openai_error")

        run = sync.sync_account(relay_account)

        assert run.outcome == SyncOutcome.BAD_ANSWER and "billing is not enabled" in run.error
        assert not BalanceSnapshot.objects.exists()

    def test_an_invalid_key_error_with_http_200_marks_the_key_invalid(self, relay_account, console):
        console.fail("/v1/dashboard/billing/subscription", "openai_invalid_key")

        run = sync.sync_account(relay_account)

        assert run.outcome == SyncOutcome.CREDENTIALS_REJECTED
        assert not state(relay_account).credentials_valid

    @pytest.mark.parametrize(("mode", "outcome"), [("401", "credentials_rejected"), ("truncated", "bad_answer")])
    def test_http_failures(self, relay_account, console, mode, outcome):
        console.fail("/v1/dashboard/billing/subscription", mode)

        assert sync.sync_account(relay_account).outcome == outcome

    def test_timeouts_are_retried(self, relay_account, console):
        console.fail("/v1/dashboard/billing/usage", "timeout")

        with pytest.raises(ProviderUnavailable):
            sync.sync_account(relay_account)
