"""The account's alert channels on the Alerts page (admin): add one, send it a test, remove it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from billing import alerts
from billing.audit import Actor
from billing.models import AlertChannel, ChannelKind, DeliveryStatus
from billing.notify import channels as channel_services
from toki_dashboard.forms import ErrorsInPlace
from toki_dashboard.roles import Role, role_required
from usage.tenancy import current_account


class ChannelForm(ErrorsInPlace, forms.Form):
    kind = forms.ChoiceField(choices=ChannelKind.choices, widget=forms.Select(attrs={"class": "input"}))
    target = forms.CharField(
        max_length=2000,
        label="Address or URL",
        help_text="An email of a member; a webhook's https:// URL; or an apprise URL such as slack://…, "
        "msteams://…, discord://…, tgram://…, ntfy://…",
        widget=forms.TextInput(attrs={"class": "input", "placeholder": "https://hooks.example.com/toki"}),
    )
    secret = forms.CharField(
        max_length=500,
        required=False,
        label="Signing secret",
        help_text="Webhooks only; leave empty to have one made (shown once).",
        widget=forms.PasswordInput(attrs={"class": "input", "autocomplete": "new-password"}),
    )
    name = forms.CharField(
        max_length=200,
        required=False,
        label="Label",
        widget=forms.TextInput(attrs={"class": "input", "placeholder": "#finance"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A prefix of its own: the rule form on the same page has fields of the same names.
        kwargs["prefix"] = "channel"
        super().__init__(*args, **kwargs)


def back_to(request: HttpRequest) -> str:
    """Where a form posted from the Alerts page (or a rule's page) goes back to."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("billing:alerts")


@require_POST
@role_required(Role.ADMIN)
def test_channel(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(AlertChannel, pk=pk, account=current_account(request))
    delivery = alerts.send_channel_test(channel)
    code = f" (HTTP {delivery.response_code})" if delivery.response_code else ""
    if delivery.status == DeliveryStatus.SENT:
        messages.success(request, f"Test sent to {channel.label}{code}.")
    else:
        messages.error(request, f"The test to {channel.label} failed{code}: {delivery.error}")
    return redirect(back_to(request))


@require_POST
@role_required(Role.ADMIN)
def remove_channel(request: HttpRequest, pk: int) -> HttpResponse:
    channel = AlertChannel.objects.filter(pk=pk, account=current_account(request)).first()
    if channel is None:  # removed already (a second click, another tab)
        messages.info(request, "That channel was removed already.")
        return redirect(back_to(request))
    channel_services.remove_channel(channel, Actor.of_user(request.user))
    messages.success(request, f"Channel {channel.label} removed.")
    return redirect(back_to(request))
