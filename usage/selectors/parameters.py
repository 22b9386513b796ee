"""Reads of what models accept, learned from traffic: which optional parameters the
unsupported-parameter failures of a model had in common (Errors page), and which capabilities
each model was seen using successfully, and when last (model catalogue)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max

from usage import parameters
from usage.models import AcceptedParameter, Account, ErrorCause, UsageRecord
from usage.periods import Period


@dataclass(frozen=True)
class ParameterShare:
    name: str
    failures: int  # of the model's failures whose parameters are known, how many used it
    seen_working_at: datetime | None  # the last successful call of the model that used it


@dataclass(frozen=True)
class ParameterFinding:
    """The unsupported-parameter failures of one model in a period, and their parameters."""

    model: str
    failures: int
    known: int  # failures whose parameters were recorded (the proxy records them)
    last_failed_at: datetime
    common: list[ParameterShare]  # in every known failure
    sometimes: list[ParameterShare]  # in some

    @property
    def suspects(self) -> list[str]:
        """Parameters in every failure that no successful call of the model ever used."""
        return [share.name for share in self.common if share.seen_working_at is None]


def unsupported_parameter_findings(*, account: Account, period: Period) -> list[ParameterFinding]:
    """Per model, its unsupported-parameter failures in the period and which optional parameters
    they had in common; most failures first. One grouped query over the failures (by model and
    parameter set: a handful of rows), one over what the models were seen accepting."""
    groups = (
        UsageRecord.objects.filter(
            account=account,
            occurred_at__gte=period.start,
            occurred_at__lt=period.end,
            error_cause=ErrorCause.UNSUPPORTED_PARAMETER,
        )
        .values("model", "request_params")
        .annotate(n=Count("id"), last=Max("occurred_at"))
        .order_by()
    )
    failures: dict[str, int] = defaultdict(int)
    known: dict[str, int] = defaultdict(int)
    last: dict[str, datetime] = {}
    used: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for group in groups:
        model = group["model"]
        failures[model] += group["n"]
        last[model] = max(last.get(model, group["last"]), group["last"])
        if group["request_params"] is None:
            continue
        known[model] += group["n"]
        for name in parameters.names_of(group["request_params"]):
            used[model][name] += group["n"]
    working = accepted_parameters(account=account, models=list(failures))
    findings = []
    for model in failures:
        shares = sorted(
            (ParameterShare(name, count, working.get(model, {}).get(name)) for name, count in used[model].items()),
            key=lambda share: (-share.failures, share.name),
        )
        findings.append(
            ParameterFinding(
                model=model,
                failures=failures[model],
                known=known[model],
                last_failed_at=last[model],
                common=[share for share in shares if share.failures == known[model]],
                sometimes=[share for share in shares if share.failures < known[model]],
            )
        )
    findings.sort(key=lambda finding: (-finding.failures, finding.model))
    return findings


def accepted_parameters(*, account: Account, models: list[str] | None = None) -> dict[str, dict[str, datetime]]:
    """model → optional parameter → the last successful call that used it."""
    rows = AcceptedParameter.objects.filter(account=account)
    if models is not None:
        rows = rows.filter(model__in=models)
    found: dict[str, dict[str, datetime]] = defaultdict(dict)
    for model, name, last_seen in rows.values_list("model", "parameter", "last_seen_at"):
        found[model][name] = last_seen
    return dict(found)


@dataclass(frozen=True)
class CapabilitySeen:
    capability: str
    label: str
    last_seen_at: datetime | None  # None: never seen working


def capabilities_seen(*, account: Account) -> dict[str, list[CapabilitySeen]]:
    """model → each capability (streaming, tools, JSON mode) with the last successful call that
    used it, for every model seen accepting any optional parameter."""
    result = {}
    for model, names in accepted_parameters(account=account).items():
        seen = []
        for capability, (shown_by, label) in parameters.CAPABILITIES.items():
            times = [names[name] for name in shown_by if name in names]
            seen.append(CapabilitySeen(capability, str(label), max(times) if times else None))
        result[model] = seen
    return result
