"""`/api/v1/budgets`: list budgets with their spend (scope `read`), create one (scope `billing`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import ConfigDict, Field, StrictBool, model_validator

from billing.api import WRITE_ANSWERS, Key, Money, Status
from billing.audit import Actor
from billing.budgets import services, spend
from billing.budgets.services import BudgetData
from billing.models import Budget, BudgetMeasure, BudgetPeriod, BudgetScope
from billing.services import BillingError, IdempotencyConflict
from toki_dashboard.roles import Role
from usage.api import PROBLEMS, Day, decimal_string
from usage.auth import TokenAuth, read_access
from usage.models import TokenScope
from usage.schemas import Text

router = Router(tags=["budgets"])

Percent = Annotated[Money, Field(gt=0, le=1000)]


class BudgetIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)]
    scope: Literal["account", "team", "api_key", "model"] = "account"
    target: Annotated[Text, Field(max_length=200)] | None = Field(
        None,
        description=(
            "The name of one of the account's teams or keys (any case; stored as the team or key spells it,"
            " 400 when the account has none of that name), or a model name or glob; omitted for account"
        ),
    )
    measure: Literal["paid", "usage_value", "tokens"] = "paid"
    amount: Money = Field(description="Decimal string: money in the account's currency, or tokens")
    period: Literal["day", "week", "month", "range"] = Field(
        "month", description="Days, weeks (from Monday) and months of DASHBOARD_TIME_ZONE, or a fixed range"
    )
    start: Day | None = Field(None, description="With period `range`: the first day (2000-01-01 to 9998-12-31)")
    end: Day | None = Field(None, description="With period `range`: the last day (inclusive)")
    thresholds: Annotated[list[Percent], Field(min_length=1, max_length=10)] = Field(
        default_factory=lambda: [Decimal(50), Decimal(80), Decimal(100)],
        description="Percentages of the amount that notify; default [50, 80, 100]",
    )
    enforce: StrictBool = Field(False, description="Once exhausted, the proxy answers its calls 429 budget_exceeded")
    idempotency_key: Key

    @model_validator(mode="after")
    def _target_fits_scope(self) -> BudgetIn:
        if self.scope != "account" and not (self.target or "").strip():
            raise ValueError("target: say which team, key or model the budget is for")
        return self


class BudgetOut(Schema):
    id: int
    name: str
    scope: str
    target: str | None
    measure: str
    amount: str
    period: str
    period_start: datetime
    period_end: datetime = Field(description="Exclusive: when a recurring budget resets")
    spent: str
    ratio: str = Field(description="spent ÷ amount, a decimal string (1.12 = 112 %)")
    state: Literal["ok", "warning", "exceeded"]
    counted: bool = Field(
        description="False for a team or key budget naming no team or key of the account (made before targets"
        " were checked): its spend cannot be counted, and `spent` 0 does not mean nothing was spent"
    )
    projected_at_period_end: str | None = Field(description="The last 7 days' pace carried to the end; null once over")
    thresholds: list[str]
    enforce: bool
    history: list[dict[str, Any]] = Field(description="Past periods, latest first: period_start, period_end, spent")


class BudgetList(Schema):
    budgets: list[BudgetOut]


class BudgetQuery(Schema):
    account: str | None = None


def budget_out(budget: Budget, found: spend.BudgetStatus) -> dict[str, Any]:
    return {
        "id": budget.pk,
        "name": budget.name,
        "scope": budget.scope,
        "target": budget.target if budget.scope != BudgetScope.ACCOUNT else None,
        "measure": budget.measure,
        "amount": decimal_string(budget.amount),
        "period": budget.period,
        "period_start": found.window.start,
        "period_end": found.window.end,
        "spent": decimal_string(found.spent),
        "ratio": decimal_string(found.ratio.quantize(spend.RATIO_QUANTUM)),
        "state": found.state,
        "counted": not spend.names_nothing(budget),
        "projected_at_period_end": None if found.projected is None else decimal_string(found.projected),
        "thresholds": [decimal_string(t) for t in budget.threshold_values],
        "enforce": budget.enforce,
        "history": [
            {"period_start": p.window.start, "period_end": p.window.end, "spent": decimal_string(p.spent)}
            for p in found.history
        ],
    }


@router.get(
    "/budgets",
    auth=read_access(Role.FINANCE),
    response={200: BudgetList, **PROBLEMS},
    summary="Budgets with their spend this period",
)
def list_budgets(request: HttpRequest, query: Query[BudgetQuery]) -> dict[str, Any]:
    """Every budget of the account with what it has spent in its current period (read from the
    rollups), its state and the forecast to the period's end: the figures the Budgets page shows."""
    account = request.auth.account(query.account)  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    budgets = Budget.objects.filter(account=account).select_related("account").order_by("name")
    return {"budgets": [budget_out(b, spend.status(b)) for b in budgets]}


@router.post(
    "/budgets",
    auth=TokenAuth(TokenScope.BILLING),
    response={201: BudgetOut, 200: BudgetOut, **WRITE_ANSWERS},
    summary="Create a budget",
)
def create_budget(request: HttpRequest, body: BudgetIn) -> Any:
    """201 with the budget; 200 with the same budget when `idempotency_key` was seen before with
    the same content; 409 when it was used for another budget, or the name is taken."""
    caller = request.auth  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    data = BudgetData(
        name=body.name,
        amount=body.amount,
        scope=BudgetScope(body.scope),
        target=body.target or "",
        measure=BudgetMeasure(body.measure),
        period=BudgetPeriod(body.period),
        starts_on=body.start,
        ends_on=body.end,
        thresholds=list(body.thresholds),
        enforce=body.enforce,
    )
    try:
        budget, created = services.create_budget(
            caller.account(), data, Actor.of_token(caller.token), idempotency_key=body.idempotency_key
        )
    except IdempotencyConflict as exc:
        raise HttpError(409, str(exc)) from exc
    except BillingError as exc:
        raise HttpError(400, str(exc)) from exc
    return Status(201 if created else 200, budget_out(budget, spend.status(budget)))
