"""Nothing lost when the database refuses a valid record: the rest of the batch is stored,
the refused record is kept as a dead letter (reason and fields, no text, no key), later
batches are never blocked, and a replay after the fix stores it once.

The refusals are real: a trigger in the test database refuses what a test names, as a
constraint or an out-of-range value would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from usage import deadletters, rollups
from usage.models import DeadLetter, HourlyUsage, UsageRecord

REFUSED = "refused-by-the-database"
KEY = "sk-live-0123456789abcdefghijWXYZ"


def _create_trigger(name: str, table: str, event: str, condition: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {condition} "
                f"BEGIN SELECT RAISE(ABORT, 'refused by {name}'); END"
            )
        else:
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN IF {condition} THEN "
                f"RAISE EXCEPTION 'refused by {name}' USING ERRCODE = 'check_violation'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")


def _drop_trigger(name: str, table: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")


@pytest.fixture
def refusing(db) -> Iterator[Callable[[str, str, str], Callable[[], None]]]:
    """Make the database refuse some rows; returns the fix (dropping the refusal)."""
    made: list[tuple[str, str]] = []

    def refuse(table: str, event: str, condition: str) -> Callable[[], None]:
        name = f"toki_test_refusal_{len(made)}"
        _create_trigger(name, table, event, condition)
        made.append((name, table))
        return lambda: _drop_trigger(name, table)

    yield refuse
    for name, table in made:
        _drop_trigger(name, table)


def record(request_id: str, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "occurred_at": "2026-11-20T10:15:00Z",
        "model": model,
        "api_key": KEY,
        "usage": {"prompt_tokens": 100, "completion_tokens": 20},
        "context_chars": 400,
    } | extra


def test_a_record_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_stored(post_records, account, refusing):
    refusing("usage_usagerecord", "INSERT", f"NEW.model = '{REFUSED}'")

    answer = post_records(record("a"), record("b", model=REFUSED), record("c"))

    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["duplicates"], body["conflicts"]) == (2, 0, [])
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "record")]
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["a", "c"]
    letter = DeadLetter.objects.get()
    assert (letter.account, letter.source, letter.request_id, letter.is_open) == (account, "api", "b", True)
    assert "refused by toki_test_refusal_0" in letter.reason
    fields = json.loads(letter.payload)
    assert (fields["model"], fields["context_chars"], fields["usage"]["prompt_tokens"]) == (REFUSED, 400, 100)
    assert KEY not in letter.payload and KEY not in letter.reason  # the key is kept encrypted only
    assert fields["api_key"] == "sk-…WXYZ" and letter.api_key_encrypted
    assert rollups.verify(account) == []


def test_after_the_fix_a_replay_stores_the_record_once_and_resolves_the_letter(post_records, account, refusing):
    fix = refusing("usage_usagerecord", "INSERT", f"NEW.model = '{REFUSED}'")
    post_records(record("a"), record("b", model=REFUSED))
    assert _replay_command() == ("Replayed: 0 stored, 0 already stored, 0 conflicting, 1 still failing; 1 still open.")

    fix()
    first = _replay_command()
    again = _replay_command()
    resent = post_records(record("a"), record("b", model=REFUSED))

    assert first == "Replayed: 1 stored, 0 already stored, 0 conflicting, 0 still failing; 0 still open."
    assert again == "Replayed: 0 stored, 0 already stored, 0 conflicting, 0 still failing; 0 still open."
    assert resent.json()["duplicates"] == 2  # the replayed record is the one the client sent
    stored = UsageRecord.objects.get(request_id="b")
    assert stored.api_key == UsageRecord.objects.get(request_id="a").api_key  # same key, by its hash
    letter = DeadLetter.objects.get()
    assert (letter.resolution, letter.attempts) == (DeadLetter.Resolution.STORED, 2)
    assert rollups.verify(account) == []


def _replay_command() -> str:
    out = io.StringIO()
    call_command("replay_dead_letters", stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_a_rollup_group_the_database_refuses_never_blocks_later_batches(post_records, account, refusing):
    # The group of model "poisoned" takes its first record, then refuses every addition.
    refusing("usage_hourlyusage", "UPDATE", "NEW.model = 'poisoned'")

    first = post_records(record("p1", model="poisoned"))
    second = post_records(record("p2", model="poisoned"), record("o1"))
    third = post_records(record("o2"), record("o3", model="other"))

    assert [a.status_code for a in (first, second, third)] == [200, 200, 200]
    assert [a.json()["accepted"] for a in (first, second, third)] == [1, 1, 2]
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["o1", "o2", "o3", "p1"]
    assert list(DeadLetter.objects.values_list("request_id", flat=True)) == ["p2"]
    assert HourlyUsage.objects.get(model="poisoned").requests == 1
    assert rollups.verify(account) == []


def test_the_same_refused_record_sent_again_is_one_open_letter(post_records, refusing):
    refusing("usage_usagerecord", "INSERT", f"NEW.model = '{REFUSED}'")

    post_records(record("b", model=REFUSED))
    post_records(record("b", model=REFUSED))

    assert DeadLetter.objects.count() == 1
    assert deadletters.open_count() == 1


def test_an_import_sets_aside_what_the_database_refuses_and_names_its_line(account, refusing, tmp_path: Path):
    refusing("usage_usagerecord", "INSERT", f"NEW.model = '{REFUSED}'")
    path = tmp_path / "usage.jsonl"
    lines = [record("a"), record("b", model=REFUSED), record("c")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out, err = io.StringIO(), io.StringIO()

    call_command("import_usage", str(path), "--account", account.slug, stdout=out, stderr=err)

    assert "line 2: could not be stored" in err.getvalue()
    assert "replay_dead_letters" in err.getvalue()
    assert "2 accepted" in out.getvalue() and "1 set aside" in out.getvalue()
    assert DeadLetter.objects.get().source == "import"
    assert UsageRecord.objects.count() == 2


def test_the_settings_page_counts_open_dead_letters_for_the_admin(post_records, refusing, admin_client):
    refusing("usage_usagerecord", "INSERT", f"NEW.model = '{REFUSED}'")
    assert "0 records set aside" in admin_client.get("/settings/").content.decode()

    post_records(record("b", model=REFUSED), record("c", model=REFUSED))

    page = admin_client.get("/settings/prices/").content.decode()
    assert "2 records set aside" in page
    assert "/admin/usage/deadletter/?state=open" in page


@pytest.fixture
def superuser_client(db, django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests"))
    return client


def test_an_admin_discards_a_letter_that_will_never_be_replayed(post_records, refusing, superuser_client):
    refusing("usage_usagerecord", "INSERT", f"NEW.model = '{REFUSED}'")
    post_records(record("b", model=REFUSED))
    letter = DeadLetter.objects.get()

    superuser_client.post("/admin/usage/deadletter/", {"action": "discard_selected", "_selected_action": [letter.pk]})

    letter.refresh_from_db()
    assert (letter.resolution, letter.is_open) == (DeadLetter.Resolution.DISCARDED, False)
    assert "0 records set aside" in superuser_client.get("/settings/").content.decode()
