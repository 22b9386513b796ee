"""Forms of the usage pages: API tokens, new prices for the price book, and exchange rates (a key's
name and team: `usage.teams.forms`).

Each form validates what a person typed and names the field at fault; `save()` hands the
write to `usage.services`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_lazy

from toki_dashboard.forms import ErrorsInPlace
from usage.models import MONEY, Account, ApiToken, ExchangeRate, ModelPrice, RateSource, TokenScope
from usage.pricing.list_prices import BEGINNING
from usage.pricing.services import add_manual_price, manual_price_history, set_exchange_rate
from usage.services import create_api_token

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class StyledForm(ErrorsInPlace, forms.Form):
    """Widgets carry app.css's `input` class; `invalid_labels` names the fields at fault."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if not isinstance(field.widget, forms.CheckboxSelectMultiple):
                extra = " select" if isinstance(field.widget, forms.Select) else ""
                field.widget.attrs["class"] = f"input{extra}"

    @property
    def invalid_labels(self) -> list[str]:
        return [str(self.fields[name].label) for name in self.errors if name in self.fields]


class ApiTokenForm(StyledForm):
    name = forms.CharField(label="Name", max_length=200, help_text="What uses it, e.g. “log shipper on prod-web-1”.")
    account = forms.ModelChoiceField(label="Account", queryset=Account.objects.order_by("name"), empty_label=None)
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=TokenScope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )

    def save(self, *, created_by: Any) -> tuple[ApiToken, str]:
        """The token and its plaintext, which the caller shows once and never keeps."""
        data = self.cleaned_data
        return create_api_token(
            account=data["account"], name=data["name"], scopes=data["scopes"], created_by=created_by
        )


class PriceForm(StyledForm):
    """A new manual price for a model from a moment on. Prices are never edited in place:
    a change is a new row, and the row it replaces is closed where the new one starts, so
    the history of what was charged stays readable. Saving reprices the affected records
    in the background (usage.receivers schedules it after commit)."""

    model_pattern = forms.CharField(
        label="Model", max_length=200, help_text="An exact model name, or a glob such as gpt-4o*."
    )
    account = forms.ModelChoiceField(
        label="Account", queryset=Account.objects.order_by("name"), required=False, empty_label="Every account"
    )
    currency = forms.RegexField(
        label="Currency",
        regex=r"^[A-Za-z]{3}$",
        max_length=3,
        error_messages={"invalid": gettext_lazy("Use a three-letter ISO 4217 code such as USD.")},
    )
    input_per_mtok = forms.DecimalField(
        label="Input per 1M tokens", min_value=0, max_digits=MONEY["max_digits"], decimal_places=MONEY["decimal_places"]
    )
    cached_input_per_mtok = forms.DecimalField(
        label="Cached input per 1M tokens",
        required=False,
        min_value=0,
        max_digits=MONEY["max_digits"],
        decimal_places=MONEY["decimal_places"],
        help_text="Empty: cached tokens cost the input price.",
    )
    output_per_mtok = forms.DecimalField(
        label="Output per 1M tokens",
        min_value=0,
        max_digits=MONEY["max_digits"],
        decimal_places=MONEY["decimal_places"],
    )
    effective_from = forms.DateTimeField(
        label=gettext_lazy("Effective from"),
        required=False,
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text="Empty: from the beginning, so every earlier request is priced too.",
    )

    def clean_model_pattern(self) -> str:
        pattern = self.cleaned_data["model_pattern"].strip()
        if not pattern:
            raise ValidationError("Enter a model name.")
        return pattern

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].upper()

    def clean_effective_from(self) -> datetime | None:
        moment = self.cleaned_data["effective_from"]
        if moment is not None and moment < BEGINNING:
            raise ValidationError(f"Pick a time after {BEGINNING:%Y-%m-%d}.")
        return moment

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        account: Account | None = data.get("account")
        currency = data.get("currency")
        if account is not None and currency and currency != account.currency:
            self.add_error("currency", f"{account.name} is billed in {account.currency}; its prices must be too.")
        cached, full = data.get("cached_input_per_mtok"), data.get("input_per_mtok")
        if cached is not None and full is not None and cached > full:
            self.add_error("cached_input_per_mtok", "Cached input cannot cost more than input.")
        if data.get("model_pattern") and data.get("currency") and "effective_from" in data:
            start = data["effective_from"] or BEGINNING
            if self._siblings(data).filter(effective_from=start).exists():
                self.add_error(
                    "effective_from",
                    "A price for this model already starts at that moment; pick another time.",
                )
        return data

    @staticmethod
    def _siblings(data: dict[str, Any]) -> Any:
        return manual_price_history(
            account=data.get("account"), model_pattern=data["model_pattern"], currency=data["currency"]
        )

    def save(self) -> ModelPrice:
        data = self.cleaned_data
        return add_manual_price(
            account=data["account"],
            model_pattern=data["model_pattern"],
            currency=data["currency"],
            input_per_mtok=data["input_per_mtok"],
            cached_input_per_mtok=data["cached_input_per_mtok"],
            output_per_mtok=data["output_per_mtok"],
            effective_from=data["effective_from"] or BEGINNING,
        )


def currency_field(label: StrOrPromise) -> forms.RegexField:
    return forms.RegexField(
        label=label,
        regex=r"^\s*[A-Za-z]{3}\s*$",
        max_length=5,
        error_messages={"invalid": gettext_lazy("Use a three-letter ISO 4217 code such as USD.")},
    )


class ExchangeRateForm(StyledForm):
    """A rate finance enters: 1 FROM = RATE TO from a moment on (the dashboard's time zone).
    Entries are never edited; entering one for a moment that has one already replaces it."""

    from_currency = currency_field(gettext_lazy("From (the price's currency)"))
    to_currency = currency_field(gettext_lazy("To (the account's currency)"))
    rate = forms.DecimalField(
        label=gettext_lazy("Rate"),
        max_digits=MONEY["max_digits"],
        decimal_places=MONEY["decimal_places"],
        help_text=gettext_lazy("How many units of the account's currency one unit of the price's currency is worth."),
    )
    effective_from = forms.DateTimeField(
        label=gettext_lazy("Effective from"),
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
    )
    note = forms.CharField(label=gettext_lazy("Source of the rate"), max_length=200, required=False)

    def clean_from_currency(self) -> str:
        return self.cleaned_data["from_currency"].strip().upper()

    def clean_to_currency(self) -> str:
        return self.cleaned_data["to_currency"].strip().upper()

    def clean_rate(self) -> Decimal:
        rate = self.cleaned_data["rate"]
        if rate <= 0:
            raise ValidationError(gettext("A rate is a positive number."))
        return rate

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("from_currency") and data.get("from_currency") == data.get("to_currency"):
            self.add_error("to_currency", gettext("A rate converts between two different currencies."))
        return data

    def save(self, *, entered_by: Any) -> ExchangeRate:
        data = self.cleaned_data
        return set_exchange_rate(
            from_currency=data["from_currency"],
            to_currency=data["to_currency"],
            rate=data["rate"],
            effective_from=data["effective_from"],
            source=RateSource.DASHBOARD,
            entered_by=entered_by,
            note=data["note"],
        )
