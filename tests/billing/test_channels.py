"""Alert channels: signed webhooks with a stable body, retried with backoff and logged with their
response codes; chat services through apprise; email channels for members only; secrets kept
encrypted and never shown back; `manage.py create_alert_channel`."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import alerts
from billing.models import AlertChannel, AlertDelivery, AlertKind, ChannelKind, DeliveryStatus
from billing.notify.channels import create_channel
from tests.billing.test_alerts import low_balance_rule, nearly_used_up
from tests.billing.webhook_receiver import WebhookReceiver
from tests.members import members_with_emails
from usage.models import Account

SECRET = "whsec-0123456789"
PAYLOAD_KEYS = {"event", "account", "rule", "severity", "value", "threshold", "message", "dashboard_url", "occurred_at"}


@pytest.fixture
def firing_rule(transactional_db, account: Account):
    nearly_used_up(account, timezone.now())
    return low_balance_rule(account, recipients="")


def test_a_firing_rule_posts_a_signed_json_body_with_the_documented_fields(
    firing_rule,
    webhook_receiver: WebhookReceiver,
):
    create_channel(firing_rule.account, kind=ChannelKind.WEBHOOK, target=webhook_receiver.url, secret=SECRET)

    alerts.evaluate_account(firing_rule.account)

    (hook,) = webhook_receiver.received
    body = hook.json
    assert set(body) >= PAYLOAD_KEYS
    assert (body["event"], body["account"], body["rule"]) == ("alert.firing", "acme", "Token balance low")
    assert (body["severity"], body["value"], body["threshold"]) == ("high", "5", "10")  # 5 % is past the 10 % tier
    assert body["message"].startswith("Token balance 5.0%") and body["occurred_at"].endswith("Z")
    assert body["dashboard_url"] == "http://127.0.0.1:8000/plans/?account=acme"
    assert hook.headers["content-type"] == "application/json"
    assert abs(int(hook.headers["x-toki-timestamp"]) - timezone.now().timestamp()) < 60
    assert hook.signature_valid(SECRET)
    assert not hook.signature_valid("another-secret")
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.kind) == (DeliveryStatus.SENT, 200, ChannelKind.WEBHOOK)


def test_a_failing_webhook_is_retried_with_backoff_and_its_response_codes_are_logged(
    firing_rule,
    webhook_receiver: WebhookReceiver,
    monkeypatch,
    settings,
    admin_client: Client,
):
    retries: list[tuple[int, float]] = []
    monkeypatch.setattr(
        "billing.tasks.send_alert_delivery.apply_async", lambda args, countdown: retries.append((args[0], countdown))
    )
    webhook_receiver.statuses = [503, 500]
    create_channel(firing_rule.account, kind=ChannelKind.WEBHOOK, target=webhook_receiver.url, secret=SECRET)

    alerts.evaluate_account(firing_rule.account)
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.response_code, delivery.attempts) == (DeliveryStatus.FAILED, 503, 1)
    assert retries == [(delivery.pk, settings.ALERT_DELIVERY_RETRY_BASE_SECONDS)]

    assert alerts.deliver(delivery.pk) == DeliveryStatus.FAILED  # the retrying task's second attempt
    assert alerts.retry_delay(2) == 2 * settings.ALERT_DELIVERY_RETRY_BASE_SECONDS
    assert alerts.deliver(delivery.pk) == DeliveryStatus.SENT
    assert alerts.deliver(delivery.pk) == DeliveryStatus.SENT  # nothing sent twice
    assert len(webhook_receiver.received) == 3
    delivery.refresh_from_db()
    assert (delivery.response_code, delivery.attempts, delivery.error) == (200, 3, "")

    page = admin_client.get(reverse("billing:edit_alert_rule", args=[firing_rule.pk])).content.decode()
    assert "Deliveries of “Token balance low”" in page and "Sent" in page and ">200<" in page


def test_a_chinese_webhook_keeps_the_english_keys_and_codes_and_words_only_its_message_in_chinese(
    firing_rule, webhook_receiver: WebhookReceiver
):
    create_channel(
        firing_rule.account, kind=ChannelKind.WEBHOOK, target=webhook_receiver.url, secret=SECRET, language="zh-hans"
    )

    alerts.evaluate_account(firing_rule.account)

    (hook,) = webhook_receiver.received
    body = hook.json
    assert set(body) >= PAYLOAD_KEYS
    # The machine contract is the English one: keys, event, severity, the rule's stored name, the figures.
    assert (body["event"], body["rule"], body["severity"], body["value"], body["threshold"]) == (
        "alert.firing",
        "Token balance low",
        "high",
        "5",
        "10",
    )
    assert body["message"].startswith("Token 余额 5.0% — 预计 ") and "runs out" not in body["message"]
    assert hook.signature_valid(SECRET)
    assert AlertDelivery.objects.get().language == "zh-hans"


def test_a_chat_channel_in_chinese_is_told_in_chinese(firing_rule, webhook_receiver: WebhookReceiver):
    target = webhook_receiver.url.replace("http://", "json://")
    create_channel(firing_rule.account, kind=ChannelKind.APPRISE, target=target, language="zh-hans")

    alerts.evaluate_account(firing_rule.account)

    (hook,) = webhook_receiver.received
    assert hook.json["title"].startswith("[Acme] Token 余额 5.0%")
    assert "剩余 token：5,000 / 100,000" in hook.json["message"] and "Tokens left" not in hook.json["message"]


def test_a_chat_channel_goes_through_apprise(firing_rule, webhook_receiver: WebhookReceiver):
    # apprise's json:// service posts to any HTTP endpoint: here the local receiver stands in for Slack & co.
    target = webhook_receiver.url.replace("http://", "json://")
    create_channel(firing_rule.account, kind=ChannelKind.APPRISE, target=target)

    alerts.evaluate_account(firing_rule.account)

    (hook,) = webhook_receiver.received
    assert hook.json["title"].startswith("[Acme] Token balance 5.0%")
    assert "Tokens left: 5,000 of 100,000" in hook.json["message"]
    assert AlertDelivery.objects.get().status == DeliveryStatus.SENT


def test_an_unreachable_chat_service_is_a_failed_delivery_with_the_reason(firing_rule, monkeypatch):
    monkeypatch.setattr("billing.tasks.send_alert_delivery.apply_async", lambda args, countdown: None)
    create_channel(firing_rule.account, kind=ChannelKind.APPRISE, target="json://127.0.0.1:9/nobody")

    alerts.evaluate_account(firing_rule.account)

    delivery = AlertDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and "127.0.0.1" in delivery.error


def test_urls_and_secrets_are_encrypted_at_rest_and_never_shown_back(
    account: Account,
    admin_client: Client,
    webhook_receiver: WebhookReceiver,
):
    url = "https://hooks.example.com/services/T000/B000/XXXXsecretpathXXXX"
    create_channel(account, kind=ChannelKind.WEBHOOK, target=url, secret=SECRET)
    create_channel(account, kind=ChannelKind.APPRISE, target="slack://TokenA/TokenB/TokenCsecret9f3A")

    with connection.cursor() as cursor:
        cursor.execute("SELECT url_encrypted, secret_encrypted, hint FROM billing_alertchannel")
        stored = " ".join(" ".join(row) for row in cursor.fetchall())
    assert "secretpath" not in stored and SECRET not in stored and "TokenB" not in stored
    assert AlertChannel.objects.get(kind=ChannelKind.WEBHOOK).url == url  # readable by the application
    page = admin_client.get(reverse("billing:alerts")).content.decode()
    assert "https://hooks.example.com/…XXXX" in page and "slack://…9f3A" in page
    assert "secretpath" not in page and SECRET not in page and "TokenB" not in page


def test_an_email_channel_must_be_a_member_of_the_account(account: Account):
    with pytest.raises(ValidationError, match="not the email of a member"):
        create_channel(account, kind=ChannelKind.EMAIL, target="stranger@example.com")
    members_with_emails(account, ["oncall@example.com"])
    assert create_channel(account, kind=ChannelKind.EMAIL, target="oncall@example.com").channel.address


def test_every_rule_notifies_every_channel_and_its_own_recipients(firing_rule, webhook_receiver: WebhookReceiver):
    members_with_emails(firing_rule.account, ["oncall@example.com", "finance@example.com"])
    firing_rule.recipients = "finance@example.com"
    firing_rule.save()
    create_channel(firing_rule.account, kind=ChannelKind.EMAIL, target="oncall@example.com")
    create_channel(firing_rule.account, kind=ChannelKind.WEBHOOK, target=webhook_receiver.url, secret=SECRET)

    alerts.evaluate_account(firing_rule.account)

    assert sorted(m.to[0] for m in mail.outbox) == ["finance@example.com", "oncall@example.com"]
    assert len(webhook_receiver.received) == 1
    assert AlertDelivery.objects.filter(status=DeliveryStatus.SENT).count() == 3


def test_send_test_to_one_channel(account: Account, admin_client: Client, webhook_receiver: WebhookReceiver):
    channel = create_channel(account, kind=ChannelKind.WEBHOOK, target=webhook_receiver.url, secret=SECRET).channel

    response = admin_client.post(reverse("billing:test_alert_channel", args=[channel.pk]), follow=True)

    assert "Test sent to Webhook http://127.0.0.1" in response.content.decode()
    (hook,) = webhook_receiver.received
    assert hook.json["event"] == "test" and hook.json["rule"] is None and hook.signature_valid(SECRET)


def test_the_command_adds_a_channel_and_shows_a_made_secret_once(account: Account, webhook_receiver: WebhookReceiver):
    out, err = StringIO(), StringIO()
    call_command(
        "create_alert_channel",
        "--account",
        "acme",
        "--kind",
        "webhook",
        "--target",
        webhook_receiver.url,
        stdout=out,
        stderr=err,
    )

    channel = AlertChannel.objects.get()
    port = webhook_receiver.server.server_address[1]
    assert f"Channel {channel.pk} (Webhook, http://127.0.0.1:{port}/…toki) added to acme." in out.getvalue()
    secret = err.getvalue().split("Signing secret (shown once): ")[1].strip()
    assert channel.secret == secret and len(secret) >= 32
    with pytest.raises(CommandError, match="not the email of a member"):
        call_command("create_alert_channel", "--account", "acme", "--kind", "email", "--target", "x@example.com")
    with pytest.raises(CommandError, match="apprise does not recognise"):
        call_command("create_alert_channel", "--account", "acme", "--kind", "apprise", "--target", "nonsense://x")


def test_rule_without_channels_or_recipients_tells_nobody_and_says_so(account: Account, admin_client: Client):
    rule = low_balance_rule(account, kind=AlertKind.WALLET_BELOW, threshold=5, recipients="")

    response = admin_client.post(reverse("billing:test_alert_rule", args=[rule.pk]), follow=True)

    assert "Nobody would be told" in response.content.decode()


def test_a_channel_added_on_the_alerts_page_speaks_the_language_chosen_else_its_creators(
    account: Account, admin_client: Client
):
    address = members_with_emails(account, ["finance@example.com"])
    url = reverse("billing:alerts")
    chosen = {"form": "channel", "channel-kind": "email", "channel-target": address, "channel-language": "zh-hans"}
    unsaid = {"form": "channel", "channel-kind": "webhook", "channel-target": "https://hooks.example.com/toki"}

    admin_client.post(url, chosen, HTTP_ACCEPT_LANGUAGE="en-US")
    admin_client.post(url, unsaid, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    admin_client.post(url, unsaid | {"channel-target": "https://hooks.example.com/other"}, HTTP_ACCEPT_LANGUAGE="en-US")

    languages = list(AlertChannel.objects.order_by("pk").values_list("kind", "language"))
    assert languages == [("email", "zh-hans"), ("webhook", "zh-hans"), ("webhook", "en")]
