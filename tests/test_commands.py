"""Management commands: create_account (docs/api.md, Management commands) and rebuild_rollups."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from usage import rollups
from usage.models import Account, HourlyUsage
from usage.schemas import RecordIn
from usage.services import record_usage


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- create_account ----------------------------------------------------------------------


def test_create_account_stores_the_given_fields(db: None) -> None:
    output = _run(
        "create_account",
        "--name",
        "Acme Research",
        "--slug",
        "acme-research",
        "--currency",
        "eur",
        "--provider",
        "newapi_console",
        "--base-url",
        "https://toki.example.com/v1",
    )

    account = Account.objects.get(slug="acme-research")
    assert account.name == "Acme Research"
    assert account.currency == "EUR"
    assert account.provider == "newapi_console"
    assert account.base_url == "https://toki.example.com/v1"
    assert "acme-research" in output


def test_create_account_defaults_to_the_configured_toki_base_url(db: None, settings: Any) -> None:
    settings.TOKI_BASE_URL = "https://toki.internal.example/v1"

    _run("create_account", "--name", "Acme", "--slug", "acme")

    account = Account.objects.get(slug="acme")
    assert account.base_url == "https://toki.internal.example/v1"
    assert (account.currency, account.provider) == ("USD", "manual")


def test_create_account_refuses_a_duplicate_slug_naming_the_slug(account: Account) -> None:
    with pytest.raises(CommandError, match="slug"):
        _run("create_account", "--name", "Another Acme", "--slug", account.slug)

    assert Account.objects.filter(slug=account.slug).count() == 1


@pytest.mark.parametrize("currency", ["DOLLARS", "euro"])
def test_create_account_refuses_a_bad_currency_naming_the_currency(db: None, currency: str) -> None:
    with pytest.raises(CommandError, match="currency"):
        _run("create_account", "--name", "Acme", "--slug", "acme", "--currency", currency)

    assert not Account.objects.exists()


def test_create_account_refuses_a_slug_that_is_not_a_slug(db: None) -> None:
    with pytest.raises(CommandError, match="slug"):
        _run("create_account", "--name", "Acme", "--slug", "not a slug!")


# --- rebuild_rollups -----------------------------------------------------------------------


@pytest.fixture
def usage_with_corrupted_rollup(account: Account) -> Account:
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    records = [
        (
            i,
            RecordIn(
                request_id=f"req-{i}",
                occurred_at=start + timedelta(minutes=25 * i),
                model="gpt-4o" if i % 2 else "deepseek-chat",
                usage={"prompt_tokens": 50 + i, "completion_tokens": 5 * i},
                cost="0.002",
            ),
        )
        for i in range(6)
    ]
    record_usage(account, records, source="api")
    assert rollups.verify(account) == []
    group = HourlyUsage.objects.filter(account=account).order_by("pk").first()
    assert group is not None
    HourlyUsage.objects.filter(pk=group.pk).update(requests=group.requests + 5, completion_tokens=0)
    return account


def test_verify_only_fails_on_a_corrupted_rollup_and_changes_nothing(usage_with_corrupted_rollup: Account) -> None:
    account = usage_with_corrupted_rollup
    before = rollups.verify(account)
    assert len(before) == 1

    with pytest.raises(CommandError, match="do not match"):
        _run("rebuild_rollups", "--verify-only")

    assert rollups.verify(account) == before


def test_rebuild_rollups_repairs_a_corrupted_rollup(usage_with_corrupted_rollup: Account) -> None:
    output = _run("rebuild_rollups", "--account", usage_with_corrupted_rollup.slug)

    assert rollups.verify(usage_with_corrupted_rollup) == []
    assert "0 differ afterwards" in output


def test_verify_only_passes_when_rollups_match(account: Account) -> None:
    output = _run("rebuild_rollups", "--verify-only")

    assert f"{account.slug}: rollups match the records." in output


def test_rebuild_rollups_refuses_an_unknown_account(db: None) -> None:
    with pytest.raises(CommandError, match="No account with slug 'nope'"):
        _run("rebuild_rollups", "--account", "nope")
