"""The billing API (docs/api.md, Endpoints): balances, plan purchases and wallet entries."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from billing import selectors, services
from billing.audit import Actor
from billing.balances import account_balances, balance_freshness
from billing.models import PlanPurchase, TokenBasis, WalletEntry
from billing.services import MAX_TOKENS, BillingError, IdempotencyConflict, PurchaseData, WalletEntryData
from usage.api import PROBLEMS, Problem, decimal_string
from usage.auth import TokenAuth, read_access
from usage.models import TokenScope
from usage.schemas import Text, UtcInstant

try:
    from ninja import Status
except ImportError:  # django-ninja before 1.5 answers (status, body) tuples

    def Status(status_code: int, value: Any) -> Any:  # type: ignore[no-redef]  # a stand-in for django-ninja's Status on versions without it
        return status_code, value


router = Router(tags=["billing"])

DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def _decimal(value: Any) -> Decimal:
    """Money arrives as a JSON number (read exactly, as a Decimal) or a decimal string ("12.50").
    A float never reaches here from a request; one from Python code is refused, being inexact."""
    if isinstance(value, bool | float):
        raise ValueError('send money as a JSON number or a decimal string such as "12.50"')
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if not isinstance(value, str) or not DECIMAL.fullmatch(value.strip()):
        raise ValueError('must be a decimal string such as "12.50"')
    try:
        return Decimal(value.strip())
    except InvalidOperation as exc:
        raise ValueError("is not a decimal number") from exc


Money = Annotated[Decimal, BeforeValidator(_decimal), Field(max_digits=24, decimal_places=10)]
Currency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code; default: the account's")]
Key = Annotated[Text, Field(min_length=1, max_length=200)]  # Text: no NUL, no lone surrogates


class PurchaseIn(Schema):
    model_config = ConfigDict(extra="forbid")

    plan: Annotated[Text, Field(min_length=1, max_length=200)]
    tokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)]
    price: Money
    currency: Currency | None = None
    effective_at: UtcInstant
    expires_at: UtcInstant
    models: Annotated[list[Annotated[Text, Field(min_length=1, max_length=200)]], Field(max_length=200)] = []
    priority: Annotated[StrictInt, Field(ge=-1000, le=1000, description="Higher burns first")] = 0
    paid_from_wallet: StrictBool = False
    token_basis: TokenBasis | None = Field(
        None, description="Which tokens the plan counts; default: the catalogue plan's, else prompt + completion"
    )
    idempotency_key: Key


class PurchaseOut(Schema):
    id: int
    plan: str
    tokens: int
    price: str
    currency: str
    effective_at: datetime
    expires_at: datetime
    models: list[str]
    priority: int
    token_basis: str
    paid_from_wallet: bool
    idempotency_key: str
    created_at: datetime
    voided_at: datetime | None


class WalletEntryIn(Schema):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["top_up", "refund", "adjustment"]
    amount: Money
    currency: Currency | None = None
    occurred_at: UtcInstant
    note: Annotated[Text, Field(max_length=2000)] = ""
    idempotency_key: Key


class WalletEntryOut(Schema):
    id: int
    kind: str
    amount: str
    currency: str
    occurred_at: datetime
    note: str
    idempotency_key: str
    created_at: datetime


def _purchase_out(purchase: PlanPurchase) -> dict[str, Any]:
    return {
        "id": purchase.pk,
        "plan": purchase.name,
        "tokens": purchase.tokens,
        "price": decimal_string(purchase.price),
        "currency": purchase.currency,
        "effective_at": purchase.effective_at,
        "expires_at": purchase.expires_at,
        "models": purchase.allowed_models,
        "priority": purchase.priority,
        "token_basis": purchase.token_basis,
        "paid_from_wallet": purchase.paid_from_wallet,
        "idempotency_key": purchase.idempotency_key,
        "created_at": purchase.created_at,
        "voided_at": purchase.voided_at,
    }


def _entry_out(entry: WalletEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "amount": decimal_string(entry.amount),
        "currency": entry.currency,
        "occurred_at": entry.occurred_at,
        "note": entry.note,
        "idempotency_key": entry.idempotency_key,
        "created_at": entry.created_at,
    }


WRITE_ANSWERS: dict[int, Any] = {409: Problem, **PROBLEMS}


@router.post(
    "/purchases",
    auth=TokenAuth(TokenScope.BILLING),
    response={201: PurchaseOut, 200: PurchaseOut, **WRITE_ANSWERS},
    summary="Record a Token Plan purchase",
)
def record_purchase(request: HttpRequest, body: PurchaseIn) -> Any:
    """201 with the purchase; 200 with the same purchase when `idempotency_key` was seen
    before with the same content; 409 when it was used for something else."""
    caller = request.auth  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    account = caller.account()
    data = PurchaseData(
        plan=body.plan.strip(),
        tokens=body.tokens,
        price=body.price,
        currency=body.currency or account.currency,
        effective_at=body.effective_at,
        expires_at=body.expires_at,
        idempotency_key=body.idempotency_key,
        models=body.models,
        priority=body.priority,
        paid_from_wallet=body.paid_from_wallet,
        token_basis=body.token_basis,
    )
    try:
        purchase, created = services.record_purchase(account, data, Actor.of_token(caller.token))
    except IdempotencyConflict as exc:
        raise HttpError(409, str(exc)) from exc
    except BillingError as exc:
        raise HttpError(400, str(exc)) from exc
    return Status(201 if created else 200, _purchase_out(purchase))


@router.post(
    "/wallet/entries",
    auth=TokenAuth(TokenScope.BILLING),
    response={201: WalletEntryOut, 200: WalletEntryOut, **WRITE_ANSWERS},
    summary="Record a wallet top-up, refund or adjustment",
)
def record_wallet_entry(request: HttpRequest, body: WalletEntryIn) -> Any:
    """Amounts are signed decimal strings: top-ups and refunds positive, adjustments either way.
    201 with the entry; 200 for a replay of the same key and content; 409 for other content."""
    caller = request.auth  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    account = caller.account()
    data = WalletEntryData(
        kind=body.kind,
        amount=body.amount,
        currency=body.currency or account.currency,
        occurred_at=body.occurred_at,
        idempotency_key=body.idempotency_key,
        note=body.note,
    )
    try:
        entry, created = services.record_wallet_entry(account, data, Actor.of_token(caller.token))
    except IdempotencyConflict as exc:
        raise HttpError(409, str(exc)) from exc
    except BillingError as exc:
        raise HttpError(400, str(exc)) from exc
    return Status(201 if created else 200, _entry_out(entry))


class BalanceQuery(Schema):
    account: str | None = None


class PlanOut(Schema):
    id: int
    name: str
    tokens_total: int
    tokens_used: int
    tokens_remaining: int
    effective_at: datetime
    expires_at: datetime
    models: list[str]
    priority: int
    projected_unused_at_expiry: int | None
    projected_unused_low: int | None = None
    projected_unused_high: int | None = None
    price: str = Field(description="What the plan was paid, in its own `currency` (never converted)")
    currency: str = Field(description="The currency the plan was paid in; may differ from the account's")


class ProviderReportedOut(Schema):
    balance: str
    currency: str
    at: datetime


class BalanceOut(Schema):
    account: str
    currency: str
    wallet_balance: str
    plans: list[PlanOut]
    token_balance: int
    burn_rate_tokens_per_day: str | None
    projected_runout_at: datetime | None
    projected_runout_earliest: datetime | None = Field(None, description="p10–p90 range of projected_runout_at")
    projected_runout_latest: datetime | None = None
    wallet_projected_runout_at: datetime | None = None
    already_run_out: bool = Field(
        False,
        description="The token balance of the plans in effect is at or below zero now: it has already run out "
        "(projected_runout_at, earliest and latest are then the moment of this answer, not a day still ahead)",
    )
    wallet_already_run_out: bool = Field(
        False,
        description="The wallet is below zero, or at zero with usage charged to it from now on: it has already run out "
        "(wallet_projected_runout_at is then the moment of this answer, not a day still ahead)",
    )
    provider_reported: ProviderReportedOut | None
    last_synced_at: datetime | None = Field(
        description="The last reading of the provider's balance: the last successful sync, or for a manual "
        "account the last balance finance recorded (see last_reading_kind)"
    )
    last_reading_kind: Literal["sync", "manual"] = Field(
        "sync", description="Whether last_synced_at is a sync or a manual reading"
    )
    stale_since: datetime | None = Field(
        None, description="Since when the synced balance is stale (no success for twice the sync interval)"
    )


@router.get("/balance", auth=read_access(), response={200: BalanceOut, **PROBLEMS}, summary="Wallet and plan balances")
def balance(request: HttpRequest, query: Query[BalanceQuery]) -> dict[str, Any]:
    """The wallet, the plans not yet expired (in burn order) and what the provider last reported,
    with the forecast (billing.forecast): the token burn rate of the models the plans cover, when
    the token balance and the wallet run out (null: not within a year) with the p10–p90 range,
    and per plan the tokens projected to expire unused. `token_balance` is what the plans in
    effect have left, whatever models they cover. Every figure is the one the pages, the banner
    and the alert emails show for the same moment (billing.balances)."""
    account = request.auth.account(query.account)  # type: ignore[attr-defined]  # django-ninja's request.auth is the caller usage.auth authenticated
    balances = account_balances(account)
    forecast = balances.forecast
    reported = selectors.latest_snapshot(account)
    freshness = balance_freshness(account)
    return {
        "account": account.slug,
        "currency": account.currency,
        "wallet_balance": decimal_string(balances.wallet_balance),
        "plans": [
            {
                "id": plan.purchase.pk,
                "name": plan.purchase.name,
                "tokens_total": plan.purchase.tokens,
                "tokens_used": plan.tokens_used,
                "tokens_remaining": plan.tokens_remaining,
                "effective_at": plan.purchase.effective_at,
                "expires_at": plan.purchase.expires_at,
                "models": plan.purchase.allowed_models,
                "priority": plan.purchase.priority,
                "projected_unused_at_expiry": plan.projected_unused,
                "projected_unused_low": plan.forecast.unused_low if plan.forecast else None,
                "projected_unused_high": plan.forecast.unused_high if plan.forecast else None,
                "price": decimal_string(plan.purchase.price),
                "currency": plan.purchase.currency,
            }
            for plan in balances.plans
        ],
        "token_balance": balances.token_balance,
        "burn_rate_tokens_per_day": decimal_string(forecast.burn_rate_tokens_per_day),
        "projected_runout_at": forecast.token_run_out.at,
        "projected_runout_earliest": forecast.token_run_out.earliest,
        "projected_runout_latest": forecast.token_run_out.latest,
        "wallet_projected_runout_at": forecast.wallet_run_out.at,
        "already_run_out": forecast.token_run_out.already,
        "wallet_already_run_out": forecast.wallet_run_out.already,
        "provider_reported": (
            {"balance": decimal_string(reported.balance), "currency": reported.currency, "at": reported.taken_at}
            if reported is not None
            else None
        ),
        "last_synced_at": freshness.last_reading_at,
        "last_reading_kind": freshness.kind,
        "stale_since": freshness.stale_since,
    }
