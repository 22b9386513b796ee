"""What each model accepts, learned from traffic: the names (never values) of the optional
request parameters a call used, what the unsupported-parameter failures of a model had in
common (Errors page), and the capabilities each model was seen using (model catalogue)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from usage import demo, parameters
from usage.models import AcceptedParameter, UsageRecord
from usage.periods import Period
from usage.schemas import validate_records
from usage.selectors.parameters import capabilities_seen, unsupported_parameter_findings
from usage.services import record_usage

UNSUPPORTED = {"type": "invalid_request_error", "code": "unsupported_parameter", "message": "Unsupported: logprobs"}


def ingest(account, *records: dict[str, Any]) -> None:
    valid, rejected = validate_records(list(records))
    assert not rejected, rejected
    record_usage(account, valid, source="proxy")


def call(request_id: str, at: datetime, model: str = "gpt-4o", **fields: Any) -> dict[str, Any]:
    return {"request_id": request_id, "occurred_at": at.isoformat(), "model": model} | fields


def failure(request_id: str, at: datetime, names: list[str] | None, model: str = "deepseek-reasoner") -> dict:
    fields: dict[str, Any] = {"status_code": 400, "error": UNSUPPORTED}
    if names is not None:
        fields["parameters"] = names
    return call(request_id, at, model, **fields)


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(microsecond=0)


# --- Names, never values ---------------------------------------------------------------------


def test_a_request_body_gives_the_names_of_its_optional_parameters_and_unknown_ones_count_as_other():
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "response_format": {"type": "json_object"},
        "temperature": 0,
        "stream": False,  # asks for nothing
        "logprobs": None,
        "stop": [],
        "frobnicate": 1,
        "x_custom": "y",
    }

    assert parameters.names_used(body) == ["tools", "response_format", "temperature", parameters.OTHER]


def test_a_mask_stores_the_names_and_reads_them_back_in_one_order():
    names = ["logprobs", "tools", "not-a-known-name", "stream"]

    assert parameters.names_of(parameters.mask_of(names)) == ["stream", "tools", "logprobs", parameters.OTHER]


def test_the_api_stores_the_parameter_names_and_a_record_without_them_stays_unknown(account, now):
    ingest(
        account,
        call("with", now, parameters=["tools", "seed", "custom_thing"]),
        call("without", now),
        call("none", now, parameters=[]),
    )
    stored = dict(UsageRecord.objects.values_list("request_id", "request_params"))

    assert parameters.names_of(stored["with"]) == ["tools", "seed", parameters.OTHER]
    assert stored["without"] is None
    assert stored["none"] == 0


def test_parameter_names_are_checked_naming_the_field(account):
    _, rejected = validate_records([call("bad", timezone.now(), parameters=["tools", 3])])

    assert rejected and rejected[0]["field"].startswith("parameters")


# --- Seen working ----------------------------------------------------------------------------


def test_successful_calls_record_what_the_model_accepted_with_first_and_last_seen(account, now):
    early, late = now - timedelta(days=3), now - timedelta(hours=1)
    ingest(account, call("a", late, parameters=["tools"], stream=True))
    ingest(account, call("b", early, parameters=["tools", "response_format"]))
    ingest(account, failure("c", now, ["tools", "logprobs"], model="gpt-4o"))  # a failure proves nothing

    rows = {
        row.parameter: (row.first_seen_at, row.last_seen_at)
        for row in AcceptedParameter.objects.filter(account=account, model="gpt-4o")
    }
    assert rows == {"tools": (early, late), "stream": (late, late), "response_format": (early, early)}
    seen = {c.capability: c.last_seen_at for c in capabilities_seen(account=account)["gpt-4o"]}
    assert seen == {
        parameters.Capability.STREAMING: late,
        parameters.Capability.TOOLS: late,
        parameters.Capability.JSON_MODE: early,
    }


def test_a_model_never_seen_using_a_capability_says_so(account, now):
    ingest(account, call("a", now, model="embed", parameters=["dimensions"]))

    seen = capabilities_seen(account=account)["embed"]

    assert [c.last_seen_at for c in seen] == [None, None, None]


# --- What failures had in common -------------------------------------------------------------


def test_the_parameters_every_unsupported_parameter_failure_had_are_found_per_model(account, now):
    ingest(
        account,
        failure("f1", now - timedelta(hours=1), ["logprobs", "temperature", "tools"]),
        failure("f2", now - timedelta(hours=2), ["logprobs", "temperature"]),
        failure("f3", now - timedelta(hours=3), ["logprobs", "temperature", "seed"]),
        failure("f4", now - timedelta(hours=4), None),  # from a source that does not record them
        failure("g1", now - timedelta(hours=1), ["n"], model="qwen-max"),
        call("ok", now - timedelta(days=2), "deepseek-reasoner", parameters=["temperature"]),
    )

    findings = {f.model: f for f in unsupported_parameter_findings(account=account, period=Period.from_query({}))}

    reasoner = findings["deepseek-reasoner"]
    assert (reasoner.failures, reasoner.known) == (4, 3)
    assert [share.name for share in reasoner.common] == ["logprobs", "temperature"]
    assert [(share.name, share.failures) for share in reasoner.sometimes] == [("seed", 1), ("tools", 1)]
    assert reasoner.suspects == ["logprobs"]  # temperature worked in a successful call
    assert findings["qwen-max"].suspects == ["n"]
    assert list(findings) == ["deepseek-reasoner", "qwen-max"]  # most failures first


def cell(html: str, model: str, column: str) -> str:
    row = re.search(rf'<tr data-model="{re.escape(model)}">(.*?)</tr>', html, re.S).group(1)
    found = re.search(rf'data-column="{column}">(.*?)</td>', row, re.S).group(1)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found)).strip()


def test_the_errors_page_shows_the_common_parameters_and_the_likely_culprit(engineer_client, account, now):
    ingest(
        account,
        failure("f1", now - timedelta(hours=1), ["logprobs", "temperature"]),
        failure("f2", now - timedelta(hours=2), ["logprobs", "temperature", "tools"]),
        call("ok", now - timedelta(hours=5), "deepseek-reasoner", parameters=["temperature"]),
    )

    page = engineer_client.get(reverse("usage:errors")).content.decode()

    assert cell(page, "deepseek-reasoner", "common").startswith("logprobs, temperature (also in successful calls")
    assert cell(page, "deepseek-reasoner", "sometimes") == "tools (1/2)"
    assert cell(page, "deepseek-reasoner", "finding").startswith("Likely rejected: logprobs: in every failure")


def test_the_catalogue_shows_each_models_capabilities_seen_working_with_the_date(engineer_client, account, now):
    ingest(
        account,
        call("s", now - timedelta(days=2), parameters=["stream", "stream_options"], stream=True),
        call("j", now - timedelta(days=1), parameters=["response_format"]),
    )

    page = engineer_client.get(reverse("usage:catalogue")).content.decode()

    row = re.search(r'<tr data-model="gpt-4o">(.*?)</tr>', page, re.S).group(1)
    shown = {
        capability: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip()
        for capability, text in re.findall(r'data-capability="(\w+)">(.*?)</td>', row, re.S)
    }
    assert shown == {
        "streaming": f"Yes last {(now - timedelta(days=2)):%-d %b %Y}",
        "tools": "not seen",
        "json_mode": f"Yes last {(now - timedelta(days=1)):%-d %b %Y}",
    }


# --- The demo sends them ---------------------------------------------------------------------


def test_the_demo_data_sends_parameters_and_its_unsupported_parameter_failures_share_some(db):
    report = demo.seed_demo_usage(days=7, seed=1, until=timezone.now().replace(minute=0, second=0, microsecond=0))
    account = report.account

    findings = unsupported_parameter_findings(account=account, period=Period.from_query({"period": "30d"}))
    seen = capabilities_seen(account=account)

    assert findings and all(set(demo.REJECTED_PARAMETERS) <= {s.name for s in f.common} for f in findings)
    assert any(c.last_seen_at for row in seen.values() for c in row if c.capability == parameters.Capability.TOOLS)
    assert any(c.last_seen_at for row in seen.values() for c in row if c.capability == parameters.Capability.JSON_MODE)
    assert not UsageRecord.objects.filter(account=account, request_params__isnull=True).exists()
