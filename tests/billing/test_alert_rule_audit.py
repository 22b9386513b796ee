"""Alert rules and channels are written through services that leave an audit entry, as
purchases and budgets do: who created or changed a rule and what it was before; which
channel was added or removed (its hint, never its URL or secret)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from billing.models import AlertChannel, AlertKind, AlertRule, AuditEvent, ChannelKind
from tests.billing.test_alerts import low_balance_rule
from tests.members import members_with_emails
from usage.models import Account

SECRET_URL = "https://hooks.example.com/T000/B000/very-secret-path"


def events(account: Account, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(account=account, action=action).order_by("pk"))


def test_creating_a_rule_on_the_page_is_audited_with_who_and_what(admin_client: Client, account: Account):
    response = admin_client.post(
        reverse("billing:alerts"),
        {"name": "Wallet low", "kind": AlertKind.WALLET_BELOW, "threshold": "25", "cooldown_hours": "12"},
    )

    assert response.status_code == 302
    rule = AlertRule.objects.get(account=account)
    (event,) = events(account, "alert_rule.created")
    admin = User.objects.get(pk=event.actor_id)
    assert (event.object_id, event.actor_label, event.before) == (str(rule.pk), f"user {admin.username}", None)
    assert event.after["name"] == "Wallet low" and Decimal(event.after["threshold"]) == 25
    assert event.after["cooldown_hours"] == 12


def test_changing_a_rule_is_audited_with_its_values_before_and_after(admin_client: Client, account: Account):
    rule = low_balance_rule(account)
    members_with_emails(account, ["a@example.com"])

    response = admin_client.post(
        reverse("billing:edit_alert_rule", args=[rule.pk]),
        {
            "name": "Renamed",
            "kind": AlertKind.TOKEN_BALANCE_PERCENT,
            "threshold": "10",
            "recipients": "a@example.com",
            "cooldown_hours": "0",
        },
    )

    assert response.status_code == 302
    (event,) = events(account, "alert_rule.changed")
    assert (event.before["name"], event.after["name"]) == (rule.name, "Renamed")
    assert event.after["recipients"] == "a@example.com"


def test_a_refused_rule_leaves_no_audit_entry(admin_client: Client, account: Account):
    admin_client.post(
        reverse("billing:alerts"),
        {"name": "x", "kind": AlertKind.WALLET_BELOW, "threshold": "1", "recipients": "nope", "cooldown_hours": "0"},
    )

    assert not AuditEvent.objects.filter(action__startswith="alert_rule.").exists()


def test_adding_and_removing_a_channel_is_audited_without_its_url(admin_client: Client, account: Account):
    response = admin_client.post(
        reverse("billing:alerts"),
        {"form": "channel", "channel-kind": ChannelKind.WEBHOOK, "channel-target": SECRET_URL, "channel-name": "ops"},
    )
    assert response.status_code == 302
    channel = AlertChannel.objects.get(account=account)

    admin_client.post(reverse("billing:remove_alert_channel", args=[channel.pk]))
    admin_client.post(reverse("billing:remove_alert_channel", args=[channel.pk]))  # a second click: nothing more

    (added,) = events(account, "alert_channel.added")
    (removed,) = events(account, "alert_channel.removed")
    assert added.object_id == removed.object_id == str(channel.pk)
    assert (added.after["kind"], added.after["name"]) == (ChannelKind.WEBHOOK, "ops")
    assert removed.before == added.after
    assert "very-secret-path" not in str(added.after) + str(removed.before)
    assert not AlertChannel.objects.exists()
