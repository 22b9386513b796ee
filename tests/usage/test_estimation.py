"""The calibrated token estimator (README "Calibrated token estimation"): fits learnt from records with reported
usage, estimates that name their fit, and re-estimation that keeps costs and the hourly
rollup exact.

Records are synthetic: their "true" token counts follow known per-class rates, so a
good fit must find them again.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from tests.usage.test_pricing import add_price
from usage import rollups
from usage.estimation.calibration import calibrate, estimator_quality, tokens_reestimated
from usage.estimation.estimator import current_estimator, family
from usage.estimation.features import CLASSES, LENGTHS, PROFILE, FallbackEstimator, Lengths
from usage.estimation.fitting import nnls
from usage.models import EstimatorFit, UsageRecord
from usage.pricing.price_book import cost_of
from usage.schemas import RecordIn
from usage.services import create_account, record_usage
from usage.tasks import calibrate_estimator

RATES = {"cjk": 1.3, "letters": 0.22, "digits": 0.45, "spaces": 0.04, "punct": 0.7, "other": 1.1}
PER_MESSAGE, PER_CONTEXT = 3.0, 4.0
START = datetime(2026, 11, 10, tzinfo=UTC)


def tokens_of(profile: dict[str, int], messages: int = 0, *, context: bool) -> int:
    total = sum(RATES[k] * profile[k] for k in CLASSES)
    return round(total + (PER_MESSAGE * messages + PER_CONTEXT if context else 0))


def random_profile(rng: random.Random, size: int) -> dict[str, int]:
    style = rng.choice(["prose", "code", "chinese", "json"])
    shares = {
        "prose": {"letters": 0.78, "spaces": 0.17, "punct": 0.04, "digits": 0.01},
        "code": {"letters": 0.55, "spaces": 0.25, "punct": 0.17, "digits": 0.03},
        "chinese": {"cjk": 0.85, "punct": 0.05, "letters": 0.05, "spaces": 0.03, "other": 0.02},
        "json": {"letters": 0.45, "punct": 0.3, "digits": 0.15, "spaces": 0.1},
    }[style]
    profile = dict.fromkeys(CLASSES, 0)
    for name, share in shares.items():
        profile[name] = int(size * share * rng.uniform(0.8, 1.2))
    return profile


def synthetic(rng: random.Random, request_id: str, model: str, *, reported: bool, lengths_only: bool = False) -> dict:
    context = random_profile(rng, rng.randint(200, 6000))
    output = random_profile(rng, rng.randint(20, 1500))
    messages = rng.randint(1, 6)
    record: dict[str, Any] = {
        "request_id": request_id,
        "occurred_at": (START + timedelta(minutes=rng.randint(0, 5000))).isoformat(),
        "model": model,
        "message_count": messages,
    }
    if lengths_only:
        record |= {"context_chars": sum(context.values()), "output_chars": sum(output.values())}
    else:
        record |= {"context_profile": context, "output_profile": output}
    if reported:
        record["usage"] = {
            "prompt_tokens": tokens_of(context, messages, context=True),
            "completion_tokens": tokens_of(output, context=False),
        }
    return record


def ingest(account, records: list[dict]) -> None:
    record_usage(account, [(i, RecordIn.model_validate(r)) for i, r in enumerate(records)], source="api")


def make_traffic(account, model: str = "qwen-max", *, reported: int = 200, estimated: int = 20, seed: int = 1) -> None:
    rng = random.Random(seed)
    ingest(account, [synthetic(rng, f"{model}-r{i}", model, reported=True) for i in range(reported)])
    ingest(account, [synthetic(rng, f"{model}-e{i}", model, reported=False) for i in range(estimated)])


def true_total(record: UsageRecord) -> int:
    return tokens_of(record.context_profile, record.message_count, context=True) + tokens_of(
        record.output_profile, context=False
    )


def test_nnls_keeps_coefficients_non_negative_where_least_squares_would_not():
    # Rows (1,0)→1, (0,1)→−1, (1,1)→0: least squares says (1, −1); with x ≥ 0 it is (½, 0).
    gram, rhs = [[2.0, 1.0], [1.0, 2.0]], [1.0, -1.0]
    assert nnls(gram, rhs) == pytest.approx([0.5, 0.0])


def test_nnls_finds_a_positive_solution_exactly():
    rng = random.Random(4)
    truth = [0.3, 1.7, 0.0, 4.0]
    rows = [[rng.uniform(0, 10) for _ in truth] for _ in range(50)]
    ys = [sum(a * x for a, x in zip(row, truth, strict=True)) for row in rows]
    gram = [[sum(r[i] * r[j] for r in rows) for j in range(4)] for i in range(4)]
    rhs = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(4)]
    assert nnls(gram, rhs) == pytest.approx(truth, abs=1e-9)


def test_without_fits_estimates_are_the_fallbacks(db):
    lengths = Lengths(context_bytes=400, output_bytes=100, message_count=2)
    assert current_estimator().estimate("any", lengths) == FallbackEstimator().estimate("any", lengths)


def test_calibration_learns_the_rates_and_re_estimates_records_with_cost_and_rollup_exact(account):
    price = add_price("qwen-max", "2", "6")
    make_traffic(account)
    estimated = UsageRecord.objects.filter(tokens_source="estimated")
    fallback_errors = [abs(r.prompt_tokens + r.completion_tokens - true_total(r)) / true_total(r) for r in estimated]

    result = calibrate()

    fit = EstimatorFit.objects.get(scope="qwen-max", kind=PROFILE, active=True)
    assert fit in result.fitted
    assert fit.median_error < 0.01 and fit.p90_error < 0.02  # the data follow the rates exactly, up to rounding
    assert fit.fallback_median_error > 0.05
    assert fit.weights["letters"] == pytest.approx(RATES["letters"], rel=0.05)
    assert fit.weights["cjk"] == pytest.approx(RATES["cjk"], rel=0.05)
    records = list(UsageRecord.objects.filter(tokens_source="estimated"))
    assert result.reestimated == len(records) == 20
    errors = [abs(r.prompt_tokens + r.completion_tokens - true_total(r)) / true_total(r) for r in records]
    assert max(errors) < 0.03 < max(fallback_errors)
    for record in records:
        assert record.estimator_version == fit.version == f"calibrated-{fit.pk}"
        assert record.reasoning_tokens == 0  # never invented
        expected = cost_of(
            price, prompt_tokens=record.prompt_tokens, cached_tokens=0, completion_tokens=record.completion_tokens
        )
        assert record.cost == pytest.approx(expected, abs=Decimal("1e-9"))
    assert rollups.verify(account) == []


def test_a_refit_that_is_not_better_keeps_the_fit_in_use_and_changes_nothing(account):
    make_traffic(account)
    first = calibrate()
    before = list(
        UsageRecord.objects.order_by("pk").values_list("prompt_tokens", "completion_tokens", "estimator_version")
    )

    again = calibrate()

    assert again.fitted == [] and again.reestimated == 0
    assert {f.pk for f in again.kept} == {f.pk for f in first.fitted}
    assert (
        list(UsageRecord.objects.order_by("pk").values_list("prompt_tokens", "completion_tokens", "estimator_version"))
        == before
    )


def test_reported_usage_is_never_re_estimated(account):
    make_traffic(account)
    reported = list(
        UsageRecord.objects.filter(tokens_source="reported").values_list("pk", "prompt_tokens", "completion_tokens")
    )

    calibrate()

    assert (
        list(
            UsageRecord.objects.filter(tokens_source="reported").values_list("pk", "prompt_tokens", "completion_tokens")
        )
        == reported
    )


def test_records_with_only_lengths_use_the_lengths_fit(account):
    make_traffic(account)
    rng = random.Random(9)
    ingest(account, [synthetic(rng, "chars-only", "qwen-max", reported=False, lengths_only=True)])

    calibrate()

    lengths_fit = EstimatorFit.objects.get(scope="qwen-max", kind=LENGTHS, active=True)
    assert UsageRecord.objects.get(request_id="chars-only").estimator_version == lengths_fit.version


def test_a_model_without_enough_records_of_its_own_uses_its_familys_fit(account):
    make_traffic(account, "qwen-max")
    rng = random.Random(5)
    ingest(account, [synthetic(rng, "rare", "qwen-turbo-latest", reported=False)])

    calibrate()

    assert family("qwen-turbo-latest") == family("qwen-max") == "qwen"
    family_fit = EstimatorFit.objects.get(scope="family:qwen", kind=PROFILE, active=True)
    assert UsageRecord.objects.get(request_id="rare").estimator_version == family_fit.version
    assert [q.scope for q in estimator_quality("qwen-turbo-latest")] == ["family:qwen", "family:qwen"]


def test_new_records_are_estimated_with_the_current_fit(account):
    make_traffic(account)
    calibrate()
    fit = EstimatorFit.objects.get(scope="qwen-max", kind=PROFILE, active=True)

    ingest(account, [synthetic(random.Random(11), "after", "qwen-max", reported=False)])

    assert UsageRecord.objects.get(request_id="after").estimator_version == fit.version


def test_the_models_estimator_error_is_readable_for_its_page(account):
    make_traffic(account)
    calibrate()

    quality = estimator_quality("qwen-max")

    assert [(q.scope, q.kind) for q in quality] == [("qwen-max", PROFILE), ("qwen-max", LENGTHS)]
    assert quality[0].median_error < quality[0].fallback_median_error
    assert quality[0].holdout_samples >= 8
    assert {q.scope for q in estimator_quality("never-seen-model")} == {"*"}  # only the all-models fit applies


def test_the_command_re_estimates_only_the_named_accounts_records(account):
    other = create_account(name="Other", slug="other")
    make_traffic(account, reported=200, estimated=5)
    make_traffic(other, reported=0, estimated=5, seed=2)
    out = StringIO()

    call_command("calibrate_estimator", "--account", "acme", stdout=out)

    versions = dict(
        UsageRecord.objects.filter(tokens_source="estimated")
        .values_list("account__slug", "estimator_version")
        .distinct()
    )
    assert versions["acme"].startswith("calibrated-")
    assert versions["other"] == FallbackEstimator.version
    assert "re-estimated 5 records" in out.getvalue()
    assert rollups.verify(account) == [] and rollups.verify(other) == []


def test_the_task_refits_and_re_estimates_every_account(account, django_capture_on_commit_callbacks):
    make_traffic(account)
    sent: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        sent.append(kwargs)

    tokens_reestimated.connect(receiver, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            changed = calibrate_estimator()
    finally:
        tokens_reestimated.disconnect(receiver)

    assert changed == 20
    earliest = UsageRecord.objects.filter(tokens_source="estimated").order_by("occurred_at").first()
    assert [(s["account"], s["since"]) for s in sent] == [(account, earliest.occurred_at)]


def test_with_too_few_records_nothing_is_fitted(account):
    make_traffic(account, reported=10, estimated=3)
    out = StringIO()

    call_command("calibrate_estimator", stdout=out)

    assert not EstimatorFit.objects.exists()
    assert "Not enough records" in out.getvalue()
    assert set(UsageRecord.objects.filter(tokens_source="estimated").values_list("estimator_version", flat=True)) == {
        FallbackEstimator.version
    }
