"""Forms of the usage pages: a key's name and team, API tokens, and new prices for the price book.

Each form validates what a person typed and names the field at fault; `save()` hands the
write to `usage.services`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from usage.models import MONEY, Account, ApiKey, ApiToken, ModelPrice, TokenScope
from usage.prices import BEGINNING
from usage.services import add_manual_price, create_api_token, manual_price_history, rename_api_key

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


class StyledForm(forms.Form):
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


class ApiKeyForm(StyledForm):
    """The two things people may change about a key; its fingerprint and last four never change."""

    name = forms.CharField(label="Display name", max_length=200)
    team = forms.CharField(
        label="Team",
        max_length=100,
        required=False,
        help_text="Requests from this key that name no team of their own are counted for this team from now on.",
    )

    def save(self, key: ApiKey) -> ApiKey:
        return rename_api_key(key, name=self.cleaned_data["name"], team=self.cleaned_data["team"])


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
        error_messages={"invalid": "Use a three-letter ISO 4217 code such as USD."},
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
        label="Effective from",
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
        data = super().clean()
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
