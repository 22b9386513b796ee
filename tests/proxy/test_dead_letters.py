"""A proxied call whose record cannot be stored as it is (the upstream answered 200 to a
model name holding a NUL byte or a lone surrogate) is kept as a dead letter: counted on
the Settings page, fixed and replayed by an administrator, stored once."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from django.core.management import call_command
from django.test import Client

from tests.proxy.conftest import KEY
from tests.proxy.test_recorder import database_down_once
from usage import rollups
from usage.models import ApiKey, DeadLetter, UsageRecord
from usage.proxy import spool
from usage.tasks import replay_proxy_spool

PROMPT = "A prompt that must never be kept anywhere"


def call_with_model(proxy, model_json: str) -> httpx.Response:
    """A chat call whose model is given as JSON text, so that escapes reach the proxy as sent."""
    body = '{"model": %s, "messages": [{"role": "user", "content": "%s"}]}' % (model_json, PROMPT)  # noqa: UP031
    return httpx.post(
        f"{proxy.url}/chat/completions",
        content=body.encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )


@pytest.fixture
def superuser_client(transactional_db, django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests"))
    return client


def test_a_model_name_the_database_cannot_hold_is_set_aside_then_fixed_and_replayed(proxy, superuser_client):
    answers = [call_with_model(proxy, '"sim-a\\u0000b"'), call_with_model(proxy, '"sim-c\\ud800d"')]

    assert [a.status_code for a in answers] == [200, 200]  # the callers were served
    assert proxy.records() == []
    letters = {json.loads(letter.payload)["model"]: letter for letter in DeadLetter.objects.all()}
    assert set(letters) == {"sim-a\x00b", "sim-c\ud800d"}
    nul = letters["sim-a\x00b"]
    assert (nul.account, nul.source, nul.is_open) == (proxy.account, "proxy", True)
    assert nul.reason.startswith("Invalid: model:") and "NUL" in nul.reason
    assert letters["sim-c\ud800d"].reason.startswith("Invalid: model:")
    fields = json.loads(nul.payload)
    assert fields["status_code"] == 200 and fields["usage"]["prompt_tokens"] > 0
    assert fields["context_chars"] == len(PROMPT)
    assert PROMPT not in nul.payload and KEY not in nul.payload  # lengths only; the key encrypted
    assert "2 records set aside" in superuser_client.get("/settings/").content.decode()

    # Replayed as it is, it still fails and stays open.
    assert "1 still failing" in _replay(nul.pk)
    # An administrator fixes the model name in the admin, then replays it.
    fields["model"] = "sim-ab"
    change = f"/admin/usage/deadletter/{nul.pk}/change/"
    assert superuser_client.post(change, {"payload": json.dumps(fields)}).status_code == 302
    superuser_client.post("/admin/usage/deadletter/", {"action": "replay_selected", "_selected_action": [nul.pk]})

    stored = UsageRecord.objects.get()
    assert (stored.model, stored.request_id, stored.source) == ("sim-ab", nul.request_id, "proxy")
    assert stored.api_key == ApiKey.objects.get(fingerprint__startswith="sha256:")  # the caller's key, by hash
    nul.refresh_from_db()
    assert nul.resolution == DeadLetter.Resolution.STORED
    assert "0 stored" in _replay(nul.pk)  # replaying again changes nothing
    assert UsageRecord.objects.count() == 1
    assert "1 record set aside" in superuser_client.get("/settings/").content.decode()
    assert rollups.verify(proxy.account) == []


def _replay(pk: int) -> str:
    out = io.StringIO()
    call_command("replay_dead_letters", "--id", str(pk), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_what_cannot_be_stored_waits_in_the_spool_during_an_outage_too(proxy, monkeypatch):
    database_down_once(monkeypatch)

    call_with_model(proxy, '"sim-a\\u0000b"')
    proxy.flush()

    lines = [json.loads(line) for path in spool.pending() for line in path.read_text().splitlines()]
    assert [line["unstorable"]["fields"]["model"] for line in lines] == ["sim-a\x00b"]
    assert DeadLetter.objects.count() == 0
    replay_proxy_spool()
    assert json.loads(DeadLetter.objects.get().payload)["model"] == "sim-a\x00b"
    assert spool.pending() == []
