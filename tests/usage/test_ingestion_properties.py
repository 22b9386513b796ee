"""Property-based: whatever mix of good and bad records arrives, every record is accounted for exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usage import rollups
from usage.models import RegisteredRequest, UsageRecord
from usage.schemas import validate_records
from usage.services import record_usage

START = datetime(2026, 10, 1, tzinfo=UTC)

token_counts = st.one_of(
    st.integers(0, 10**9), st.integers(-5, -1), st.integers(10**9 + 1, 10**13), st.text(max_size=3)
)
valid_usage = st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**6)}
)
any_usage = st.one_of(
    valid_usage,
    st.fixed_dictionaries({"input_tokens": token_counts, "output_tokens": token_counts}),
    st.none(),
    st.just("not an object"),
)


@st.composite
def raw_records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
    record: dict[str, Any] = {
        # A small id space so that replays and conflicts happen often.
        "request_id": draw(st.sampled_from([f"r{i}" for i in range(12)] + [""])),
        "occurred_at": (START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 3)))).isoformat(),
        "model": draw(st.sampled_from(["gpt-4o", "gpt-4o-mini", "qwen-max"])),
    }
    usage = draw(any_usage)
    if usage is not None:
        record["usage"] = usage
    if draw(st.booleans()):
        record["context_bytes"] = draw(st.one_of(st.integers(0, 10**6), st.integers(-3, -1)))
    if draw(st.integers(0, 5)) == 0:
        record["unexpected"] = True
    if draw(st.integers(0, 5)) == 0:
        record["status_code"] = draw(st.sampled_from([200, 400, 429, 500, 700, "200"]))
    return record


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(raw_records(), min_size=1, max_size=25), min_size=1, max_size=4))
def test_every_record_is_accepted_duplicated_conflicting_or_rejected_and_rollups_stay_exact(account, batches):
    UsageRecord.objects.filter(account=account).delete()
    RegisteredRequest.objects.filter(account=account).delete()  # the request ids go with them
    rollups.rebuild(account)
    first_seen: dict[str, Any] = {}
    for batch in batches:
        valid, rejected = validate_records(batch)
        result = record_usage(account, valid, source="api")

        assert result.accepted + result.duplicates + len(result.conflicts) + len(rejected) == len(batch)
        assert len({r["index"] for r in rejected}) == len(rejected)
        for _, record in valid:
            first_seen.setdefault(record.request_id, record)

    assert UsageRecord.objects.filter(account=account).count() == len(first_seen)
    assert rollups.verify(account) == []
