"""Finance's forms on the Plans & wallet page: purchases, top-ups, adjustments and voids.

The forms only validate and shape what was typed; recording goes through
`billing.services`, which keeps the audit trail and the idempotency rules. Every form
carries its idempotency key in a hidden field, generated when the empty form is
rendered, so submitting the same form twice records one thing.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import PlanPurchase, TokenPlan, WalletEntry, WalletEntryKind
from billing.services import MAX_TOKENS, PurchaseData, WalletEntryData
from toki_dashboard.forms import ErrorsInPlace
from usage.models import MONEY, Account
from usage.periods import dashboard_tz

MODEL_SEPARATORS = re.compile(r"[\s,]+")


def new_key(prefix: str) -> str:
    """A fresh idempotency key for one rendering of a form."""
    return f"{prefix}:{uuid.uuid4().hex}"


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"class": "input", **(attrs or {})}, format="%Y-%m-%dT%H:%M")


class LocalDateTimeField(forms.DateTimeField):
    """A wall-clock time typed in DASHBOARD_TIME_ZONE, stored as an aware datetime."""

    widget = LocalDateTimeInput
    input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]

    def to_python(self, value: Any) -> datetime | None:
        with timezone.override(dashboard_tz()):
            return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        with timezone.override(dashboard_tz()):
            return super().prepare_value(value)


def _text(**attrs: Any) -> forms.TextInput:
    return forms.TextInput(attrs={"class": "input", **attrs})


def _number(**attrs: Any) -> forms.NumberInput:
    return forms.NumberInput(attrs={"class": "input", **attrs})


class FinanceForm(ErrorsInPlace, forms.Form):
    """Marks invalid inputs for assistive technology and the stylesheet."""

    key_prefix = "form"
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=200)

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_key(self.key_prefix))

    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                widget.attrs = {**widget.attrs, "aria-invalid": "true"}


class PurchaseForm(FinanceForm):
    """A purchase from the catalogue (blank fields take the plan's values) or an ad hoc one."""

    prefix = "purchase"
    key_prefix = "purchase"
    catalogue_plan = forms.ModelChoiceField(
        queryset=TokenPlan.objects.none(),
        required=False,
        empty_label=gettext_lazy("— a new plan —"),
        label=gettext_lazy("Plan"),
        widget=forms.Select(attrs={"class": "input"}),
    )
    plan_name = forms.CharField(
        required=False,
        max_length=200,
        label=gettext_lazy("New plan name"),
        widget=_text(placeholder=gettext_lazy("e.g. Pro 50M")),
    )
    tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_TOKENS,
        label=gettext_lazy("Tokens"),
        widget=_number(placeholder=gettext_lazy("the plan's")),
    )
    price = forms.DecimalField(
        min_value=Decimal(0), label=gettext_lazy("Price paid"), **MONEY, widget=_number(step="any")
    )
    currency = forms.RegexField(
        regex=r"^[A-Z]{3}$", max_length=3, label=gettext_lazy("Currency"), widget=_text(autocomplete="off")
    )
    effective_at = LocalDateTimeField(label=gettext_lazy("Effective from"))
    expires_at = LocalDateTimeField(
        required=False, label=gettext_lazy("Expires at"), help_text=gettext_lazy("Blank: the plan's validity")
    )
    allowed_models = forms.CharField(
        required=False,
        label=gettext_lazy("Allowed models"),
        help_text=gettext_lazy(
            "Names or globs (gpt-4o*), separated by commas or spaces; blank: the plan's (or every model)."
        ),
        widget=_text(placeholder="gpt-4o*, claude-*"),
    )
    priority = forms.IntegerField(
        required=False,
        min_value=-1000,
        max_value=1000,
        label=gettext_lazy("Priority"),
        widget=_number(placeholder=gettext_lazy("the plan's")),
        help_text=gettext_lazy("Higher burns first"),
    )
    paid_from_wallet = forms.BooleanField(required=False, label=gettext_lazy("Paid from the wallet"))

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, account=account, **kwargs)
        cast(forms.ModelChoiceField, self.fields["catalogue_plan"]).queryset = TokenPlan.objects.filter(
            account=account, active=True
        )
        if not self.is_bound:
            self.initial.setdefault("currency", account.currency)
            self.initial.setdefault("effective_at", timezone.now().replace(second=0, microsecond=0))

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        plan: TokenPlan | None = data.get("catalogue_plan")
        name = (data.get("plan_name") or "").strip()
        if plan is None and not name:
            self.add_error("plan_name", _("Choose a plan from the catalogue or name a new one."))
        if plan is None and data.get("tokens") is None and "tokens" not in self.errors:
            self.add_error("tokens", _("A new plan needs its number of tokens."))
        effective, expires = data.get("effective_at"), data.get("expires_at")
        if expires is None and plan is None and "expires_at" not in self.errors:
            self.add_error("expires_at", _("A new plan needs an expiry time."))
        if effective and expires and expires <= effective:
            self.add_error("expires_at", _("The expiry must be after the effective time."))
        currency = data.get("currency")
        if data.get("paid_from_wallet") and currency and currency != self.account.currency:
            wallet = self.account.currency
            self.add_error(
                "currency",
                _("A purchase paid from the wallet is in the wallet's currency (%(currency)s).") % {"currency": wallet},
            )
        return data

    def purchase_data(self) -> PurchaseData:
        data = self.cleaned_data
        plan: TokenPlan | None = data["catalogue_plan"]
        models_text = (data.get("allowed_models") or "").strip()
        models = [m for m in MODEL_SEPARATORS.split(models_text) if m]
        effective: datetime = data["effective_at"]
        expires = data["expires_at"]
        if expires is None and plan is not None:
            expires = effective + timedelta(days=plan.validity_days)
        return PurchaseData(
            plan=plan.name if plan is not None else data["plan_name"].strip(),
            tokens=data["tokens"] if data["tokens"] is not None else plan.tokens,  # type: ignore[union-attr]  # clean() requires the tokens or a catalogue plan
            price=data["price"],
            currency=data["currency"],
            effective_at=effective,
            expires_at=expires,
            idempotency_key=data["idempotency_key"],
            models=models or (list(plan.allowed_models) if plan is not None else []),
            priority=data["priority"] if data["priority"] is not None else (plan.priority if plan else 0),
            paid_from_wallet=data["paid_from_wallet"],
        )


class WalletEntryForm(FinanceForm):
    """An entry timed when it is first recorded: a second submission of the same form (same
    key) is given the first one's time, so that the service recognises it as a replay."""

    kind: str

    def entry_data(self) -> WalletEntryData:
        key = self.cleaned_data["idempotency_key"]
        first = WalletEntry.objects.filter(account=self.account, idempotency_key=key).first()
        return WalletEntryData(
            kind=self.kind,
            amount=self.cleaned_data["amount"],
            currency=self.account.currency,
            occurred_at=first.occurred_at if first is not None else timezone.now(),
            idempotency_key=key,
            note=self.cleaned_data["note"].strip(),
        )


class TopUpForm(WalletEntryForm):
    prefix = "top_up"
    key_prefix = "top-up"
    amount = forms.DecimalField(
        min_value=Decimal("0.01"),
        **MONEY,
        label=gettext_lazy("Amount"),
        widget=_number(step="0.01", inputmode="decimal"),
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        label=gettext_lazy("Note"),
        widget=_text(placeholder=gettext_lazy("e.g. invoice 2026-031")),
    )

    kind = WalletEntryKind.TOP_UP


class AdjustmentForm(WalletEntryForm):
    """A correction of the wallet: a signed amount and the reason."""

    prefix = "adjustment"
    key_prefix = "adjustment"
    amount = forms.DecimalField(
        **MONEY,
        label=gettext_lazy("Amount"),
        help_text=gettext_lazy("Positive adds money, negative takes it away"),
        widget=_number(step="0.01"),
    )
    note = forms.CharField(
        max_length=2000,
        label=gettext_lazy("Reason"),
        widget=_text(placeholder=gettext_lazy("Why the wallet is corrected")),
    )

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError(_("An adjustment of zero changes nothing."))
        return amount

    kind = WalletEntryKind.ADJUSTMENT


class VoidPurchaseForm(ErrorsInPlace, forms.Form):
    purchase = forms.ModelChoiceField(queryset=PlanPurchase.objects.none(), widget=forms.HiddenInput)
    reason = forms.CharField(max_length=2000, widget=_text(placeholder=gettext_lazy("Why it is voided")))

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["purchase"]).queryset = PlanPurchase.objects.filter(
            account=account, voided_at__isnull=True
        )
