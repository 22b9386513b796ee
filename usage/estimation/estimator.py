"""The calibrated estimator: the most specific stored fit for each side of a call, the
fallback where there is none, never more than one call can hold; and the one ingestion uses now."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from usage.estimation.features import (
    ALL_MODELS,
    Estimate,
    Estimator,
    FallbackEstimator,
    Lengths,
    best_kind,
    context_features,
    output_features,
)
from usage.estimation.fitting import predict
from usage.estimation.token_limits import capped
from usage.models import EstimatorFit

_FAMILY = re.compile(r"[a-z]+")


def family(model: str) -> str:
    """The family a model falls back to: the leading letters of its name, after any
    `vendor/` prefix (gpt-4o-mini → gpt, qwen2.5-72b → qwen, deepseek-chat → deepseek)."""
    base = model.lower().rsplit("/", 1)[-1]
    found = _FAMILY.match(base)
    return found.group(0) if found else base


def family_scope(model: str) -> str:
    return f"family:{family(model)}"


def scopes_for(model: str) -> tuple[str, ...]:
    """Fits to look for, most specific first."""
    return (model, family_scope(model), ALL_MODELS)


@dataclass(frozen=True, slots=True)
class Fit:
    """Weights of one fit, as stored in usage.models.EstimatorFit."""

    id: int
    scope: str
    kind: str
    weights: dict[str, float]

    @property
    def version(self) -> str:
        return f"calibrated-{self.id}"


class CalibratedEstimator:
    """Uses the most specific fit there is for each side of a call; sides without one
    (nothing calibrated yet, or nothing logged the fits can use) get the fallback."""

    version = "calibrated"

    def __init__(self, fits: Mapping[tuple[str, str], Fit] | Callable[[], Mapping[tuple[str, str], Fit]]) -> None:
        self._fits = fits if not callable(fits) else None
        self._load = fits if callable(fits) else None
        self._fallback = FallbackEstimator()

    @property
    def fits(self) -> Mapping[tuple[str, str], Fit]:
        if self._fits is None:
            assert self._load is not None
            self._fits = self._load()  # lazily: most batches carry usage and never ask
        return self._fits

    def fit_for(self, model: str, kind: str) -> Fit | None:
        fits = self.fits
        for scope in scopes_for(model):
            found = fits.get((scope, kind))
            if found is not None:
                return found
        return None

    def _side(self, model: str, lengths: Lengths, *, context: bool) -> tuple[int, str] | None:
        profile = lengths.context_profile if context else lengths.output_profile
        for kind in best_kind(profile):
            features = context_features(kind, lengths) if context else output_features(kind, lengths)
            if features is None:
                continue
            found = self.fit_for(model, kind)
            if found is not None:
                return max(round(predict(found.weights, features)), 0), str(found.id)
        return None

    def estimate(self, model: str, lengths: Lengths) -> Estimate:
        """The estimate, never more than one call can hold (usage.estimation.token_limits)."""
        return capped(model, lengths, self._estimate(model, lengths))

    def _estimate(self, model: str, lengths: Lengths) -> Estimate:
        if not self.fits:
            return self._fallback.estimate(model, lengths)
        prompt_side = self._side(model, lengths, context=True)
        output_side = self._side(model, lengths, context=False)
        if prompt_side is None and output_side is None:
            return self._fallback.estimate(model, lengths)
        fallback = self._fallback.estimate(model, lengths)
        prompt, prompt_id = prompt_side if prompt_side else (fallback.prompt_tokens, "fb")
        completion, output_id = output_side if output_side else (fallback.completion_tokens, "fb")
        has_context = lengths.context_profile is not None or lengths.context_chars or lengths.context_bytes
        has_output = lengths.output_profile is not None or lengths.output_chars or lengths.output_bytes
        ids = [i for i, logged in ((prompt_id, has_context), (output_id, has_output)) if logged] or [prompt_id]
        version = "calibrated-" + (ids[0] if len(set(ids)) == 1 else "/".join(ids))
        return Estimate(prompt_tokens=prompt, completion_tokens=completion, version=version)


def active_fits() -> dict[tuple[str, str], Fit]:
    """The fits in use, by (scope, kind)."""
    return {
        (row["scope"], row["kind"]): Fit(row["id"], row["scope"], row["kind"], row["weights"])
        for row in EstimatorFit.objects.filter(active=True).values("id", "scope", "kind", "weights")
    }


def current_estimator() -> Estimator:
    """The estimator ingestion uses now: the active fits, loaded on first use."""
    return CalibratedEstimator(active_fits)
