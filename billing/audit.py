"""Who did something, and the audit trail it leaves (who, when, what: before and after)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import models

from billing.models import AuditEvent
from usage.models import Account, ApiToken


@dataclass(frozen=True)
class Actor:
    """A user, an API token or the application itself."""

    label: str
    user: Any = None

    @classmethod
    def of_user(cls, user: Any) -> Actor:
        return cls(label=f"user {user.get_username()}", user=user)

    @classmethod
    def of_token(cls, token: ApiToken) -> Actor:
        return cls(label=f"API token {token.name!r} ({token.hint}…)", user=token.created_by)

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(label=what)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(instance: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of a row as JSON-ready values (foreign keys as ids)."""
    values: dict[str, Any] = {}
    for name in fields:
        field = instance._meta.get_field(name)
        attname = getattr(field, "attname", name)
        values[name] = _json_value(getattr(instance, attname))
    return values


def record(
    actor: Actor,
    action: str,
    instance: models.Model,
    *,
    account: Account | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        account=account,
        actor=actor.user if getattr(actor.user, "pk", None) else None,
        actor_label=actor.label[:200],
        action=action,
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        before=before,
        after=after,
    )
