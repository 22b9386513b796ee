"""The account's alert channels on the Alerts page (admin): add one, send it a test, remove it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import alerts
from billing.audit import Actor
from billing.models import AlertChannel, ChannelKind, DeliveryStatus
from billing.notify import channels as channel_services
from toki_dashboard.forms import ErrorsInPlace
from toki_dashboard.roles import Role, role_required
from usage.tenancy import current_account


class ChannelForm(ErrorsInPlace, forms.Form):
    kind = forms.ChoiceField(
        choices=ChannelKind.choices, label=gettext_lazy("Kind"), widget=forms.Select(attrs={"class": "input"})
    )
    target = forms.CharField(
        max_length=2000,
        label=gettext_lazy("Address or URL"),
        help_text=gettext_lazy(
            "An email of a member; a webhook's https:// URL; or an apprise URL such as slack://…, "
            "msteams://…, discord://…, tgram://…, ntfy://…"
        ),
        widget=forms.TextInput(attrs={"class": "input", "placeholder": "https://hooks.example.com/toki"}),
    )
    secret = forms.CharField(
        max_length=500,
        required=False,
        label=gettext_lazy("Signing secret"),
        help_text=gettext_lazy("Webhooks only; leave empty to have one made (shown once)."),
        widget=forms.PasswordInput(attrs={"class": "input", "autocomplete": "new-password"}),
    )
    name = forms.CharField(
        max_length=200,
        required=False,
        label=gettext_lazy("Label"),
        widget=forms.TextInput(attrs={"class": "input", "placeholder": "#finance"}),
    )
    language = forms.ChoiceField(
        choices=settings.LANGUAGES,
        required=False,  # not posted (an older page, a script): the language of whoever adds it
        label=gettext_lazy("Language"),
        help_text=gettext_lazy(
            "What its emails and chat messages are written in (a webhook's keys stay English). "
            "A rule's own recipients get the language they chose."
        ),
        widget=forms.Select(attrs={"class": "input"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A prefix of its own: the rule form on the same page has fields of the same names.
        kwargs["prefix"] = "channel"
        super().__init__(*args, **kwargs)
        # The language of whoever adds it, unless they choose another.
        self.fields["language"].initial = get_language() if get_language() in dict(settings.LANGUAGES) else None


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
        messages.success(request, _("Test sent to %(channel)s%(code)s.") % {"channel": channel.label, "code": code})
    else:
        messages.error(
            request,
            _("The test to %(channel)s failed%(code)s: %(error)s")
            % {"channel": channel.label, "code": code, "error": delivery.error},
        )
    return redirect(back_to(request))


@require_POST
@role_required(Role.ADMIN)
def remove_channel(request: HttpRequest, pk: int) -> HttpResponse:
    channel = AlertChannel.objects.filter(pk=pk, account=current_account(request)).first()
    if channel is None:  # removed already (a second click, another tab)
        messages.info(request, _("That channel was removed already."))
        return redirect(back_to(request))
    channel_services.remove_channel(channel, Actor.of_user(request.user))
    messages.success(request, _("Channel %(channel)s removed.") % {"channel": channel.label})
    return redirect(back_to(request))
