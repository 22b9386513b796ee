"""The upstream's error message on every ingestion path, kept capped and without secrets, and a
failed request's page that shows it with the remedy of its cause and its neighbours."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from usage.error_causes import MAX_ERROR_MESSAGE, PROMPT_REMOVED, REMEDIES, remedy, shown_message
from usage.ingestion import content_hash
from usage.models import ErrorCause, UsageRecord
from usage.schemas import RecordIn, validate_records
from usage.services import record_usage

UNSUPPORTED = {
    "type": "invalid_request_error",
    "code": "unsupported_parameter",
    "message": "Unsupported parameter: 'logprobs' is not supported with this model.",
}


def ingest(account, *records: dict[str, Any]) -> None:
    valid, rejected = validate_records(list(records))
    assert not rejected
    record_usage(account, valid, source="api")


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</dd>', html, re.S)
    assert found, element_id
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


# --- What is kept of a message ---------------------------------------------------------------


def test_a_message_keeps_its_words_but_not_keys_bearer_tokens_or_addresses():
    message = (
        "Incorrect API key sk-proj-AbCdEf0123456789xyzXYZ for Authorization: Bearer abcdefgh12345678; "
        "contact ops.team+toki@example.co.uk"
    )

    shown = shown_message(message)

    assert shown.startswith("Incorrect API key")
    for secret in ("AbCdEf0123456789xyzXYZ", "abcdefgh12345678", "ops.team+toki@example.co.uk"):
        assert secret not in shown
    assert shown.count("[redacted]") >= 3


def test_a_long_message_is_cut_to_the_cap_with_an_ellipsis():
    shown = shown_message("The request failed because " + "very " * 400 + "badly.")

    assert len(shown) == MAX_ERROR_MESSAGE
    assert shown.endswith("…")


def test_passages_of_the_request_text_are_taken_out_of_a_message_and_short_words_stay():
    prompt = "Please translate the confidential board minutes of 3 March into French"
    message = f'Content policy violation in input: "{prompt[7:60]}" (the input)'

    shown = shown_message(message, request_texts=["You are a translator.", prompt])

    assert "confidential board minutes" not in shown
    assert shown == f'Content policy violation in input: "{PROMPT_REMOVED}" (the input)'


def test_a_message_that_shares_nothing_with_the_request_is_unchanged():
    message = "This model's maximum context length is 8192 tokens."

    assert shown_message(message, request_texts=["Hello there, how are you doing today my friend?"]) == message


def test_the_errors_page_and_a_request_page_read_one_remedy_per_cause():
    for cause in ErrorCause.values:
        if cause != ErrorCause.NONE:
            assert remedy(cause) == REMEDIES[cause] != ""
    assert "see the error message" not in " ".join(map(str, REMEDIES.values()))


# --- Every path stores it --------------------------------------------------------------------


def test_the_ingestion_api_stores_the_message_redacted(account, post_records):
    error = UNSUPPORTED | {"message": "Unsupported parameter 'logprobs' (key sk-abcdefghijklmnop1234)"}
    response = post_records(
        {"request_id": "api-1", "occurred_at": timezone.now().isoformat(), "model": "m", "status_code": 400}
        | {"error": error}
    )

    assert response.status_code in (200, 201), response.content
    record = UsageRecord.objects.get(request_id="api-1")
    assert record.error_cause == ErrorCause.UNSUPPORTED_PARAMETER
    assert record.error_message.startswith("Unsupported parameter 'logprobs' (key sk-[redacted]")
    assert "abcdefghijklmnop1234" not in record.error_message


def test_a_record_without_a_message_hashes_as_before(account):
    """The optional message changes nothing for clients that never send one: a replay of a
    record stored before is still a duplicate."""
    fields = {"request_id": "old", "occurred_at": "2026-11-20T10:00:00Z", "model": "m", "status_code": 400}
    without = RecordIn.model_validate(fields | {"error": {"type": "invalid_request_error"}})
    with_message = RecordIn.model_validate(fields | {"error": {"type": "invalid_request_error", "message": "x"}})

    assert content_hash(without) != content_hash(with_message)
    ingest(account, fields | {"error": {"type": "invalid_request_error"}})
    assert UsageRecord.objects.get(request_id="old").error_message == ""


def test_a_csv_import_stores_the_error_message_column(account, tmp_path: Path):
    path = tmp_path / "usage.csv"
    path.write_text(
        "request_id,occurred_at,model,status_code,error_type,error_code,error_message\n"
        'csv-1,2026-11-20T10:00:00Z,gpt-4o,400,invalid_request_error,unsupported_parameter,"Unsupported: tools"\n',
        encoding="utf-8",
    )

    call_command("import_usage", str(path), "--account", account.slug, stdout=None)

    record = UsageRecord.objects.get(request_id="csv-1")
    assert (record.error_code, record.error_message) == ("unsupported_parameter", "Unsupported: tools")


# --- The request page ------------------------------------------------------------------------


def test_a_failed_request_page_shows_type_code_message_and_the_remedy_of_its_cause(engineer_client, account):
    ingest(
        account,
        {"request_id": "fail-1", "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(), "model": "gpt-4o"}
        | {"status_code": 400}
        | {"error": UNSUPPORTED},
    )
    record = UsageRecord.objects.get(request_id="fail-1")

    page = engineer_client.get(reverse("usage:request_detail", args=[record.pk])).content.decode()

    assert text_of(page, "failure-type") == "invalid_request_error"
    assert text_of(page, "failure-code") == "unsupported_parameter"
    assert UNSUPPORTED["message"].replace("'", "&#x27;") in page
    assert remedy(ErrorCause.UNSUPPORTED_PARAMETER).replace("'", "&#x27;") in page
    errors_page = engineer_client.get(reverse("usage:errors")).content.decode()
    assert remedy(ErrorCause.UNSUPPORTED_PARAMETER).replace("'", "&#x27;") in errors_page


def test_a_successful_request_page_has_no_failure_card(engineer_client, account):
    ingest(account, {"request_id": "ok-1", "occurred_at": "2026-11-20T10:00:00Z", "model": "gpt-4o"})
    record = UsageRecord.objects.get(request_id="ok-1")

    page = engineer_client.get(reverse("usage:request_detail", args=[record.pk])).content.decode()

    assert 'id="failure"' not in page


def test_a_request_page_links_the_previous_and_next_request_of_its_key_and_of_its_model(engineer_client, account):
    start = timezone.now().replace(microsecond=0) - timedelta(hours=5)
    plan = [  # (request id, minutes after start, key, model)
        ("k1-a", 0, "alpha", "gpt-4o"),
        ("k2-a", 1, "beta", "gpt-4o"),
        ("k1-b", 2, "alpha", "deepseek-chat"),
        ("mid", 3, "alpha", "gpt-4o"),
        ("k1-c", 3, "alpha", "deepseek-chat"),  # the same instant: the id breaks the tie
        ("k2-b", 4, "beta", "gpt-4o"),
        ("k1-d", 5, "alpha", "gpt-4o"),
    ]
    ingest(
        account,
        *[
            {"request_id": rid, "occurred_at": (start + timedelta(minutes=m)).isoformat(), "model": model}
            | {"api_key": f"name:{key}"}
            for rid, m, key, model in plan
        ],
    )
    pk = dict(UsageRecord.objects.values_list("request_id", "pk"))

    page = engineer_client.get(reverse("usage:request_detail", args=[pk["mid"]])).content.decode()

    def linked(element_id: str) -> tuple[str | None, str | None]:
        html = re.search(rf'id="{element_id}">(.*?)</dd>', page, re.S).group(1)
        prev = re.search(r'href="([^"]+)" rel="prev"', html)
        nxt = re.search(r'href="([^"]+)" rel="next"', html)
        return (prev.group(1) if prev else None, nxt.group(1) if nxt else None)

    url = {rid: reverse("usage:request_detail", args=[n]) for rid, n in pk.items()}
    ordered = sorted(plan, key=lambda p: (p[1], pk[p[0]]))
    mine = [rid for rid, _, key, _ in ordered if key == "alpha"]
    same_model = [rid for rid, _, _, model in ordered if model == "gpt-4o"]
    at = mine.index("mid")
    assert linked("neighbours-key") == (url[mine[at - 1]], url[mine[at + 1]])
    at = same_model.index("mid")
    assert linked("neighbours-model") == (url[same_model[at - 1]], url[same_model[at + 1]])


def test_the_newest_request_of_a_model_has_no_next_link(engineer_client, account):
    ingest(account, {"request_id": "only", "occurred_at": "2026-11-20T10:00:00Z", "model": "solo"})
    record = UsageRecord.objects.get(request_id="only")

    page = engineer_client.get(reverse("usage:request_detail", args=[record.pk])).content.decode()

    assert text_of(page, "neighbours-model") == "No earlier request of this model · No later request of this model"
    assert text_of(page, "neighbours-key") == "The request had no key."
