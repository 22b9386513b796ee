"""Calibrating the token estimator on stored records, and re-estimating with it (README "Calibrated token estimation").

`calibrate()` is what the Celery task and `manage.py calibrate_estimator` run:

1. Training data: records with reported usage that also logged lengths (a
   character-class profile, or characters/bytes), newest first, per model. One record
   in five, chosen by a hash of its request_id, is held out and never trained on.
2. Fits: per model, per family (usage.estimation.estimator.family) and for all models, each
   of both kinds (profile, lengths) that has enough records. A fit is measured on its
   scope's held-out records together with the fallback estimator and the fit in use;
   it replaces the fit in use only when its median error is lower there (and must beat
   the fallback). The fit in use otherwise gets its errors measured anew.
3. Re-estimation: every estimated record whose estimate the current fits would change
   gets the new tokens, version and cost, in chunks; the hourly rollup moves by the
   difference (usage.pricing.repricing's helpers), so it stays equal to a recount.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.dispatch import Signal
from django.utils import timezone

from usage import rollups
from usage.estimation.estimator import CalibratedEstimator, active_fits, family_scope
from usage.estimation.features import (
    ALL_MODELS,
    FEATURES,
    LENGTHS,
    PROFILE,
    Estimate,
    FallbackEstimator,
    Lengths,
    context_features,
    output_features,
)
from usage.estimation.fitting import Sample, fit, predict, quantile, relative_errors, training_rows
from usage.models import Account, ErrorCause, EstimatorFit, RepricingRun, TokensSource, UsageRecord
from usage.pricing.price_book import PriceBook
from usage.pricing.repricing import FIELDS as PRICING_FIELDS
from usage.pricing.repricing import VALUATION_FIELDS, priced, rollup_row, set_valuation

logger = logging.getLogger(__name__)

# Sent after re-estimation changed records' tokens, once its transaction has committed.
# Arguments: account, since (the earliest occurred_at changed). Token-based consumers
# (plan burn-down) recompute from there; cost changes are also announced by the
# RepricingRun the re-estimation records its progress in.
tokens_reestimated = Signal()

MIN_TRAINING = 30  # records a scope needs to get a fit of its own
MIN_HOLDOUT = 8  # held-out records it needs to have its error measured
HOLDOUT_EVERY = 5
MAX_RECORDS_PER_MODEL = 20_000
CHUNK_SIZE = 2_000
LENGTH_FIELDS = (
    "context_chars",
    "context_bytes",
    "output_chars",
    "output_bytes",
    "message_count",
    "context_profile",
    "output_profile",
)


def is_held_out(request_id: str) -> bool:
    """Stable across refits, so a record is never trained on after being tested on."""
    return zlib.crc32(request_id.encode()) % HOLDOUT_EVERY == 0


def lengths_of_record(record: UsageRecord | dict[str, Any]) -> Lengths:
    get = record.get if isinstance(record, dict) else lambda name: getattr(record, name)
    return Lengths(**{name: get(name) for name in LENGTH_FIELDS})


# --- Training data ---------------------------------------------------------------------


@dataclass
class Examples:
    train: list[Sample] = field(default_factory=list)
    holdout: list[Sample] = field(default_factory=list)

    def extend(self, other: Examples) -> None:
        self.train.extend(other.train)
        self.holdout.extend(other.holdout)


def _has_lengths() -> Q:
    return Q(context_profile__isnull=False) | Q(context_chars__isnull=False) | Q(context_bytes__isnull=False)


def examples_by_model() -> dict[str, Examples]:
    """Training and held-out samples per model, from records with reported usage."""
    reported = UsageRecord.objects.filter(
        _has_lengths(), tokens_source=TokensSource.REPORTED, error_cause=ErrorCause.NONE, prompt_tokens__gt=0
    )
    models = [
        row["model"] for row in reported.values("model").annotate(n=Count("id")).order_by() if row["n"] >= MIN_HOLDOUT
    ]
    result: dict[str, Examples] = {}
    for model in sorted(models):
        examples = Examples()
        rows = (
            reported.filter(model=model)
            .order_by("-occurred_at")
            .values("request_id", "prompt_tokens", "completion_tokens", "reasoning_tokens", *LENGTH_FIELDS)
        )
        for row in rows[:MAX_RECORDS_PER_MODEL].iterator(chunk_size=2000):
            # Hidden reasoning tokens are in completion_tokens but in no logged length.
            completion = row["completion_tokens"] if not row["reasoning_tokens"] else None
            sample = Sample(lengths_of_record(row), row["prompt_tokens"], completion)
            (examples.holdout if is_held_out(row["request_id"]) else examples.train).append(sample)
        result[model] = examples
    return result


def scoped_examples(by_model: dict[str, Examples]) -> dict[str, Examples]:
    """The examples of each model, of each family and of all models together."""
    scopes: dict[str, Examples] = defaultdict(Examples)
    for model, examples in by_model.items():
        scopes[model].extend(examples)
        scopes[family_scope(model)].extend(examples)
        scopes[ALL_MODELS].extend(examples)
    return dict(scopes)


# --- Fitting ----------------------------------------------------------------------------


def estimate_with(kind: str, weights: dict[str, float], lengths: Lengths) -> Estimate:
    """One fit's estimate; a side it cannot read is estimated by the fallback."""
    fallback = FallbackEstimator().estimate("", lengths)
    context = context_features(kind, lengths)
    output = output_features(kind, lengths)
    return Estimate(
        prompt_tokens=round(predict(weights, context)) if context is not None else fallback.prompt_tokens,
        completion_tokens=round(predict(weights, output)) if output is not None else fallback.completion_tokens,
        version="candidate",
    )


def _fallback_estimate(lengths: Lengths) -> Estimate:
    return FallbackEstimator().estimate("", lengths)


def measured(kind: str, weights: dict[str, float], holdout: Sequence[Sample]) -> Errors:
    """A fit's errors on held-out samples."""
    return Errors.of(relative_errors(lambda lengths: estimate_with(kind, weights, lengths), holdout))


def usable(kind: str, samples: Iterable[Sample]) -> list[Sample]:
    """Samples with something a fit of `kind` reads on their context side."""
    return [s for s in samples if context_features(kind, s.lengths) is not None]


@dataclass(frozen=True)
class Errors:
    median: float
    p90: float

    @classmethod
    def of(cls, errors: Sequence[float]) -> Errors:
        return cls(quantile(errors, 0.5), quantile(errors, 0.9))

    def better_than(self, other: Errors) -> bool:
        return (self.median, self.p90) < (other.median, other.p90)


@dataclass
class CalibrationResult:
    fitted: list[EstimatorFit] = field(default_factory=list)  # new fits now in use
    kept: list[EstimatorFit] = field(default_factory=list)  # fits in use that stayed
    reestimated: int = 0

    def describe(self) -> str:
        lines = [
            f"{'new' if f in self.fitted else 'kept'} {f.version}: {f.scope} ({f.kind}), "
            f"median error {f.median_error:.1%}, p90 {f.p90_error:.1%} on {f.holdout_samples} held-out records "
            f"(fallback {f.fallback_median_error:.1%} / {f.fallback_p90_error:.1%})"
            for f in [*self.fitted, *self.kept]
        ]
        lines.append(f"re-estimated {self.reestimated} records")
        return "\n".join(lines)


def refit() -> CalibrationResult:
    """Fit every scope and kind with enough data; keep a new fit only where it is better."""
    result = CalibrationResult()
    in_use = {(f.scope, f.kind): f for f in EstimatorFit.objects.filter(active=True)}
    for scope, examples in sorted(scoped_examples(examples_by_model()).items()):
        for kind in (PROFILE, LENGTHS):
            train, holdout = usable(kind, examples.train), usable(kind, examples.holdout)
            if len(train) < MIN_TRAINING or len(holdout) < MIN_HOLDOUT:
                continue
            weights = fit(kind, training_rows(kind, train))
            candidate = measured(kind, weights, holdout)
            fallback = Errors.of(relative_errors(_fallback_estimate, holdout))
            current = in_use.get((scope, kind))
            current_errors = measured(kind, current.weights, holdout) if current is not None else None
            best_so_far = current_errors if current_errors is not None else fallback
            if candidate.better_than(best_so_far) and candidate.better_than(fallback):
                result.fitted.append(_activate(scope, kind, weights, len(train), len(holdout), candidate, fallback))
            elif current is not None and current_errors is not None:
                _remeasure(current, len(holdout), current_errors, fallback)
                result.kept.append(current)
    return result


def _activate(
    scope: str, kind: str, weights: dict[str, float], samples: int, holdout: int, errors: Errors, fallback: Errors
) -> EstimatorFit:
    with transaction.atomic():
        EstimatorFit.objects.filter(scope=scope, kind=kind, active=True).update(active=False)
        return EstimatorFit.objects.create(
            scope=scope,
            kind=kind,
            weights={name: weights.get(name, 0.0) for name in FEATURES[kind]},
            samples=samples,
            holdout_samples=holdout,
            median_error=errors.median,
            p90_error=errors.p90,
            fallback_median_error=fallback.median,
            fallback_p90_error=fallback.p90,
            active=True,
        )


def _remeasure(current: EstimatorFit, holdout: int, errors: Errors, fallback: Errors) -> None:
    current.holdout_samples = holdout
    current.median_error, current.p90_error = errors.median, errors.p90
    current.fallback_median_error, current.fallback_p90_error = fallback.median, fallback.p90
    current.save(
        update_fields=["holdout_samples", "median_error", "p90_error", "fallback_median_error", "fallback_p90_error"]
    )


# --- Re-estimation -------------------------------------------------------------------------

REESTIMATE_FIELDS = (*PRICING_FIELDS, "request_id", "estimator_version", *LENGTH_FIELDS)


def reestimate(account: Account | None = None, *, chunk_size: int = CHUNK_SIZE) -> int:
    """Re-estimate the estimated records the current fits would estimate differently;
    returns how many changed. Cost follows the new tokens; the rollup stays exact."""
    estimator = CalibratedEstimator(active_fits())
    accounts = [account] if account is not None else list(Account.objects.order_by("pk"))
    changed = 0
    for acc in accounts:
        changed += _reestimate_account(acc, estimator, chunk_size)
    return changed


def _reestimate_account(account: Account, estimator: CalibratedEstimator, chunk_size: int) -> int:
    records = UsageRecord.objects.filter(account=account, tokens_source=TokensSource.ESTIMATED)
    total = records.count()
    if not total:
        return 0
    # Progress for the pages, and the signal billing rechecks changed costs on.
    run = RepricingRun.objects.create(account=account, total=total)
    changed, last_id, since = 0, 0, None
    try:
        while True:
            with transaction.atomic():
                chunk = list(
                    records.filter(id__gt=last_id)
                    .order_by("id")
                    .only(*REESTIMATE_FIELDS)
                    .select_for_update()[:chunk_size]
                )
                if not chunk:
                    break
                book = PriceBook.for_account(account, {r.model for r in chunk})
                done, earliest = _reestimate_chunk(chunk, estimator, book)
                RepricingRun.objects.filter(pk=run.pk).update(
                    done=run.done + len(chunk), changed=run.changed + done, updated_at=timezone.now()
                )
                run.done, run.changed = run.done + len(chunk), run.changed + done
            changed += done
            if earliest is not None and (since is None or earliest < since):
                since = earliest
            last_id = chunk[-1].pk
    finally:
        now = timezone.now()
        RepricingRun.objects.filter(pk=run.pk).update(finished_at=now, updated_at=now)
    if since is not None:
        transaction.on_commit(lambda: tokens_reestimated.send(sender=UsageRecord, account=account, since=since))
    return changed


def _reestimate_chunk(
    records: Sequence[UsageRecord], estimator: CalibratedEstimator, book: PriceBook
) -> tuple[int, datetime | None]:
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    dirty: list[UsageRecord] = []
    for record in records:
        estimate = estimator.estimate(record.model, lengths_of_record(record))
        if (record.prompt_tokens, record.completion_tokens, record.estimator_version) == (
            estimate.prompt_tokens,
            estimate.completion_tokens,
            estimate.version,
        ):
            continue
        before.append(rollup_row(record))
        record.prompt_tokens, record.completion_tokens = estimate.prompt_tokens, estimate.completion_tokens
        record.estimator_version = estimate.version
        set_valuation(record, priced(record, book))
        after.append(rollup_row(record))
        dirty.append(record)
    if dirty:
        UsageRecord.objects.bulk_update(
            dirty,
            ["prompt_tokens", "completion_tokens", "estimator_version", *VALUATION_FIELDS],
            batch_size=500,
        )
        rollups.move(before, after)
    return len(dirty), min((r.occurred_at for r in dirty), default=None)


def calibrate(account: Account | None = None) -> CalibrationResult:
    """Refit from every account's records (tokenizers do not depend on the account), then
    re-estimate the estimated records of `account`, or of every account."""
    result = refit()
    result.reestimated = reestimate(account)
    logger.info("estimator calibrated: %s", result.describe().replace("\n", "; "))
    return result


# --- Reads for pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatorQuality:
    """How good the estimates of a model are: the fit they come from and its measured error."""

    version: str
    scope: str
    kind: str
    median_error: float
    p90_error: float
    holdout_samples: int
    fallback_median_error: float
    fallback_p90_error: float
    trained_at: datetime


def estimator_quality(model: str) -> list[EstimatorQuality]:
    """The fits a model's estimates use (profile first, then lengths), with their errors
    on held-out records; empty while only the fallback estimates it (error unmeasured)."""
    estimator = CalibratedEstimator(active_fits())
    ids = [found.id for kind in (PROFILE, LENGTHS) if (found := estimator.fit_for(model, kind)) is not None]
    fits = {f.pk: f for f in EstimatorFit.objects.filter(pk__in=ids)}
    return [
        EstimatorQuality(
            version=f.version,
            scope=f.scope,
            kind=f.kind,
            median_error=f.median_error,
            p90_error=f.p90_error,
            holdout_samples=f.holdout_samples,
            fallback_median_error=f.fallback_median_error,
            fallback_p90_error=f.fallback_p90_error,
            trained_at=f.trained_at,
        )
        for f in (fits[i] for i in ids if i in fits)
    ]
