"""When the model catalogue is synced: beat's dispatcher, "Sync models now" through a real
Celery worker, and `manage.py sync_models`."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client

from billing import model_sync, tasks
from tests.billing.fake_catalogue import model_entry
from tests.billing.fake_console import RELAY_KEY
from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from toki_dashboard.celery import app
from toki_dashboard.roles import Role
from usage.catalogue.models import CatalogueModel, CatalogueOutcome, CatalogueSync
from usage.models import Membership, Provider
from usage.services import create_account

DEADLINE_SECONDS = 30


def test_beat_dispatches_the_catalogue_syncs_hourly_by_default():
    entry = settings.CELERY_BEAT_SCHEDULE["billing-sync-model-catalogues"]

    assert entry == {"task": "billing.tasks.dispatch_model_syncs", "schedule": 3600.0}
    assert entry["task"] in app.tasks and "billing.tasks.sync_model_catalogue" in app.tasks


def test_the_schedule_takes_consoles_and_accounts_with_a_relay_key_only(newapi_account):
    create_account(name="Manual", slug="manual", provider=Provider.MANUAL)
    keyed = create_account(name="Manual with key", slug="keyed", provider=Provider.MANUAL)
    keyed.set_credentials({"api_key": RELAY_KEY})
    keyed.save()
    create_account(name="Relay without key", slug="bare", provider=Provider.OPENAI_BILLING)
    paused = create_account(name="Paused", slug="paused", provider=Provider.NEWAPI_CONSOLE)
    paused.sync_interval_minutes = 0
    paused.save()

    assert model_sync.accounts_due() == [newapi_account.pk, keyed.pk]


def test_rejected_credentials_are_not_tried_again_until_they_change(relay_account, console):
    console.fail("/v1/models", "401")
    assert model_sync.sync_models(relay_account).outcome == CatalogueOutcome.CREDENTIALS_REJECTED

    assert model_sync.accounts_due() == []

    relay_account.set_credentials({"api_key": RELAY_KEY})  # re-entered: encrypted anew
    relay_account.save()
    assert model_sync.accounts_due() == [relay_account.pk]


def test_the_dispatcher_enqueues_each_due_account(relay_account, monkeypatch):
    enqueued: list[tuple] = []
    monkeypatch.setattr(tasks.sync_model_catalogue, "delay", lambda *args: enqueued.append(args))

    assert tasks.dispatch_model_syncs.apply().get() == 1
    assert enqueued == [(relay_account.pk, "schedule")]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert condition(), f"{what} within {DEADLINE_SECONDS}s"


def test_sync_models_now_runs_on_a_real_worker_and_retries_an_unavailable_provider(
    worker,  # noqa: F811
    relay_account,
    console,
    make_user,
):
    console.fail("/v1/models", "502")  # the first attempt fails, the retry succeeds
    enzo = make_user("enzo", Role.ENGINEER)
    Membership.objects.create(account=relay_account, user=enzo)
    client = Client()
    client.force_login(enzo)

    response = client.post("/catalogue/sync/")

    assert response.status_code == 302 and response["Location"] == "/catalogue/"
    wait_for(lambda: CatalogueSync.objects.filter(outcome=CatalogueOutcome.SUCCESS).exists(), "the worker synced")
    runs = list(CatalogueSync.objects.order_by("pk").values_list("trigger", "outcome"))
    assert runs == [("manual", CatalogueOutcome.UNAVAILABLE), ("manual", CatalogueOutcome.SUCCESS)]
    assert set(CatalogueModel.objects.values_list("name", flat=True)) == {"gpt-4o", "deepseek-chat"}
    page = client.get("/catalogue/").content.decode()
    assert "Read " in page and 'data-outcome="unavailable"' in page


def test_sync_models_now_is_for_engineers(finance_client, relay_account):
    assert finance_client.post("/catalogue/sync/").status_code == 403
    assert not CatalogueSync.objects.exists()


def test_the_sync_models_command_syncs_and_reports(relay_account, console):
    console.state.models = [model_entry("gpt-4o"), model_entry("o3-mini")]
    out = StringIO()

    call_command("sync_models", "--account", relay_account.slug, stdout=out)

    assert out.getvalue() == (
        "acme: 2 models listed (/v1/models), 2 new, 0 removed, 0 back; prices: 0 new, 0 changed\n"
    )
    assert CatalogueSync.objects.get().trigger == "command"


def test_the_sync_models_command_fails_when_a_sync_fails(relay_account, console):
    console.fail("/v1/models", "truncated")

    with pytest.raises(CommandError, match="1 model sync"):
        call_command("sync_models", stdout=StringIO())


def test_the_sync_models_command_names_an_unknown_account(db):
    with pytest.raises(CommandError, match="No account 'nope'"):
        call_command("sync_models", "--account", "nope", stdout=StringIO())


def test_the_sync_models_command_says_when_no_account_can_list_its_models(account):
    out = StringIO()

    call_command("sync_models", stdout=out)

    assert out.getvalue().startswith("No account lists its models")
    assert not CatalogueSync.objects.exists()
