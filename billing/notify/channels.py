"""Adding and removing an account's alert channels (the page, the command and the admin).

An email channel is an address of someone who may see the account (its members and
admins). A webhook is an http(s) URL and a signing secret (made here when none is given,
and shown once). An apprise channel is a chat service's apprise URL. URLs and secrets are
encrypted at rest with FIELD_ENCRYPTION_KEY and shown back only as a hint.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.translation import gettext as _

from billing import audit
from billing.audit import Actor
from billing.models import AlertChannel, ChannelKind
from billing.notify import chat
from usage.models import Account
from usage.tenancy import member_emails


@dataclass(frozen=True)
class NewChannel:
    channel: AlertChannel
    secret: str  # a webhook's signing secret, to show once ("" for the others)


def check_target(account: Account, kind: str, target: str) -> None:
    if kind == ChannelKind.EMAIL:
        try:
            validate_email(target)
        except ValidationError:
            raise ValidationError(
                {"target": _("%(address)s is not an email address.") % {"address": repr(target)}}
            ) from None
        if target.lower() not in member_emails(account):
            raise ValidationError(
                {
                    "target": _(
                        "%(address)s is not the email of a member of %(account)s: alerts go only to people "
                        "who may see the account."
                    )
                    % {"address": target, "account": account.name}
                }
            )
    elif kind == ChannelKind.WEBHOOK:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError({"target": _("A webhook is an http:// or https:// URL.")})
    elif kind == ChannelKind.APPRISE:
        if "://" not in target or not chat.is_supported(target):
            raise ValidationError(
                {"target": _("apprise does not recognise this URL (e.g. slack://…, msteams://…, tgram://…, ntfy://…).")}
            )
    else:
        raise ValidationError({"kind": _("%(kind)s is not email, webhook or apprise.") % {"kind": repr(kind)}})


AUDITED_FIELDS = ("kind", "name", "hint", "language")  # never the URL or the secret: the hint says which


def create_channel(
    account: Account,
    *,
    kind: str,
    target: str,
    secret: str = "",
    name: str = "",
    language: str = "",
    created_by: Any = None,
    actor: Actor | None = None,
) -> NewChannel:
    """The channel, or a ValidationError naming the field at fault. Audited as `actor`
    (default: the user who created it, else the application)."""
    target = target.strip()
    check_target(account, kind, target)
    channel = AlertChannel(
        account=account,
        kind=kind,
        name=name.strip()[:200],
        language=language if language in dict(settings.LANGUAGES) else "",
        created_by=created_by,
    )
    if kind == ChannelKind.EMAIL:
        channel.address = target
        channel.hint = target
        secret = ""
    else:
        channel.set_url(target)
        if kind == ChannelKind.WEBHOOK:
            secret = secret.strip() or secrets.token_urlsafe(32)
            channel.set_secret(secret)
        else:
            secret = ""
    with transaction.atomic():
        channel.save()
        audit.record(
            actor or (Actor.of_user(created_by) if created_by is not None else Actor.system()),
            "alert_channel.added",
            channel,
            account=account,
            after=audit.snapshot(channel, AUDITED_FIELDS),
        )
    return NewChannel(channel, secret)


@transaction.atomic
def remove_channel(channel: AlertChannel, actor: Actor) -> None:
    """Remove the channel; rules and budgets stop notifying it. The audit keeps what it was."""
    before = audit.snapshot(channel, AUDITED_FIELDS)
    pk = channel.pk
    channel.delete()
    channel.pk = pk  # the audit entry names the row that was removed
    audit.record(actor, "alert_channel.removed", channel, account=channel.account, before=before)
