"""Alert rules → episodes → email: edge-triggered, deduplicated, retried, and visible."""

from __future__ import annotations

import email
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from io import StringIO

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import alerts
from billing.models import (
    AlertDelivery,
    AlertEpisode,
    AlertKind,
    AlertNotification,
    AlertRule,
    DeliveryStatus,
    NotificationKind,
)
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from tests.members import members_with_emails
from toki_dashboard.roles import Role
from usage.models import Account, Membership, UserLanguage

RECIPIENTS = ["finance@example.com", "oncall@example.com"]


def day_at(now: datetime, back: int) -> datetime:
    return datetime.combine((now - timedelta(days=back)).date(), time(6), tzinfo=UTC)


def nearly_used_up(account: Account, now: datetime, *, prefix: str = "r") -> int:
    """A 100,000-token plan with 95,000 used over the last ten days: 5% left."""
    purchase = buy(account, f"{prefix}-pro", 100_000, now - timedelta(days=20), now + timedelta(days=60))
    ingest(
        account,
        *[record(f"{prefix}-{back}", day_at(now, back), "gpt-4o", 4_750, 4_750, "0.10") for back in range(1, 11)],
    )
    allocate(account, now)
    return purchase


def recover(account: Account, now: datetime) -> None:
    """A second plan: the balance is back above half."""
    buy(account, "top-up-plan", 100_000, now - timedelta(minutes=1), now + timedelta(days=60))
    allocate(account, now)


def low_balance_rule(account: Account, **fields) -> AlertRule:
    return AlertRule.objects.create(
        account=account,
        name=fields.pop("name", "Token balance low"),
        kind=fields.pop("kind", AlertKind.TOKEN_BALANCE_PERCENT),
        threshold=fields.pop("threshold", 20),
        recipients=fields.pop("recipients") if "recipients" in fields else members_with_emails(account, RECIPIENTS),
        cooldown_hours=fields.pop("cooldown_hours", 24),
        **fields,
    )


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def firing(transactional_db, account: Account, now: datetime) -> AlertRule:
    nearly_used_up(account, now)
    return low_balance_rule(account)


def test_a_rule_that_starts_firing_sends_one_email_with_the_figure_and_the_numbers(firing: AlertRule, now):
    alerts.evaluate_account(firing.account, now=now)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject.startswith("[Acme] Token balance 5.0% — runs out around ")
    assert message.to == RECIPIENTS
    assert "5,000 of 100,000" in message.body
    assert "http://127.0.0.1:8000/plans/?account=acme" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and "5,000 of 100,000" in html
    episode = AlertEpisode.objects.get(rule=firing)
    assert episode.is_open and episode.notified_at is not None
    assert AlertDelivery.objects.get(notification__episode=episode).status == DeliveryStatus.SENT


def test_a_rule_that_stays_in_its_tier_reminds_once_per_cooldown(firing: AlertRule, now):
    alerts.evaluate_account(firing.account, now=now)
    alerts.evaluate_account(firing.account, now=now + timedelta(minutes=5))
    alerts.evaluate_account(firing.account, now=now + timedelta(hours=23))
    assert len(mail.outbox) == 1

    alerts.evaluate_account(firing.account, now=now + timedelta(hours=24, minutes=5))
    alerts.evaluate_account(firing.account, now=now + timedelta(hours=40))  # within the cooldown of the reminder
    alerts.evaluate_account(firing.account, now=now + timedelta(hours=48, minutes=10))

    assert [m.subject.split(":")[0] for m in mail.outbox[1:]] == ["[Acme] Still firing", "[Acme] Still firing"]
    assert AlertEpisode.objects.filter(rule=firing).count() == 1


def test_without_cooldown_there_is_no_reminder(transactional_db, account: Account, now):
    nearly_used_up(account, now)
    low_balance_rule(account, cooldown_hours=0)

    for hours in (0, 30, 90):
        alerts.evaluate_account(account, now=now + timedelta(hours=hours))

    assert len(mail.outbox) == 1


def test_recovery_resolves_the_episode_with_one_email_and_a_new_drop_opens_a_new_one(firing: AlertRule, now):
    alerts.evaluate_account(firing.account, now=now)
    recover(firing.account, now)

    alerts.evaluate_account(firing.account, now=now + timedelta(minutes=5))
    alerts.evaluate_account(firing.account, now=now + timedelta(minutes=10))

    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject.startswith("[Acme] Resolved: Token balance 53% — runs out around ")
    episode = AlertEpisode.objects.get(rule=firing)
    assert episode.resolved_at == now + timedelta(minutes=5)

    firing.threshold = 60  # the same balance now counts as low again: a new episode
    firing.save()
    alerts.evaluate_account(firing.account, now=now + timedelta(minutes=15))
    assert AlertEpisode.objects.filter(rule=firing).count() == 2
    assert len(mail.outbox) == 3


def test_a_rule_that_never_fired_resolves_nothing(transactional_db, account: Account, now):
    nearly_used_up(account, now)
    low_balance_rule(account, threshold=2)

    alerts.evaluate_account(account, now=now)

    assert mail.outbox == [] and not AlertEpisode.objects.exists()
    assert AlertRule.objects.get().last_summary.startswith("Token balance 5.0%")


def test_a_disabled_rule_is_not_evaluated_and_its_open_episode_closes_silently(firing: AlertRule, now):
    alerts.evaluate_account(firing.account, now=now)
    AlertRule.objects.filter(pk=firing.pk).update(enabled=False)

    alerts.evaluate_account(firing.account, now=now + timedelta(hours=30))

    assert len(mail.outbox) == 1
    assert not AlertEpisode.objects.filter(resolved_at__isnull=True).exists()


def test_wallet_and_run_out_rules_carry_their_own_figures(transactional_db, account: Account, now):
    nearly_used_up(account, now)
    top_up(account, "t", "2.00", now - timedelta(days=30))  # 0.10 a day once the plan is used up
    wallet = low_balance_rule(account, name="Wallet low", kind=AlertKind.WALLET_BELOW, threshold=10)
    soon = low_balance_rule(account, name="Runs out soon", kind=AlertKind.RUNOUT_WITHIN, threshold=3)

    outcomes = {o.rule.pk: o.check for o in alerts.evaluate_account(account, now=now)}

    assert outcomes[wallet.pk].firing and outcomes[wallet.pk].summary.startswith("Wallet 2.00 USD — runs out around ")
    assert outcomes[soon.pk].firing and outcomes[soon.pk].summary.startswith("Token balance runs out around ")


def test_a_plan_expiring_with_tokens_projected_unused_fires(transactional_db, account: Account, now):
    buy(account, "pack", 100_000, now - timedelta(days=20), now + timedelta(days=2), models=["deepseek-*"])
    ingest(account, *[record(f"d-{b}", day_at(now, b), "deepseek-chat", 500, 500, "0.01") for b in range(1, 8)])
    allocate(account, now)
    rule = low_balance_rule(account, name="Plan wasted", kind=AlertKind.PLAN_EXPIRING_UNUSED, threshold=50, days=3)

    (outcome,) = alerts.evaluate_account(account, now=now)

    assert outcome.check.firing
    assert outcome.check.summary.startswith("pack expires ")
    assert "% unused" in outcome.check.summary
    assert rule.pk == outcome.rule.pk


def test_an_error_surge_counts_the_cause_in_the_last_hour(transactional_db, account: Account, now):
    quota = {"status_code": 429, "error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "x"}}
    ingest(
        account, *[record(f"e-{i}", now - timedelta(minutes=i + 1), "gpt-4o", 0, 0, None, **quota) for i in range(5)]
    )
    rule = low_balance_rule(account, name="Quota errors", kind=AlertKind.ERROR_SURGE, threshold=5)
    rule.error_cause = "insufficient_quota"
    rule.save()

    (outcome,) = alerts.evaluate_account(account, now=now)

    assert outcome.check.firing and outcome.check.value == 5


# --- Delivery -------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(settings) -> Iterator[Sink]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield sink
    finally:
        controller.stop()


def test_a_real_smtp_server_receives_the_alert_email_with_text_and_html(firing: AlertRule, now, smtp_server: Sink):
    alerts.evaluate_account(firing.account, now=now)

    (envelope,) = smtp_server.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(RECIPIENTS)
    message: EmailMessage = email.message_from_bytes(envelope.content, policy=default_policy)  # type: ignore[assignment]
    assert str(message["Subject"]).strip().startswith("[Acme] Token balance 5.0% — runs out around ")
    assert message["To"] == ", ".join(RECIPIENTS)
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Tokens left: 5,000 of 100,000" in text
    assert "<th" in html and "5,000 of 100,000" in html and 'href="http://127.0.0.1:8000/plans/?account=acme"' in html
    assert AlertDelivery.objects.get().status == DeliveryStatus.SENT


FIGURES = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+%?")  # 100,000 · 5.0% · 1,234.50


def test_a_recipient_who_reads_chinese_receives_the_alert_email_in_chinese_with_the_same_figures(
    firing: AlertRule, now, smtp_server: Sink
):
    """Emails go to addresses; a rule's recipients are members, each written to in the language
    they chose for the dashboard: one message per language, the same figures in each."""
    finance = User.objects.get(email="finance@example.com")
    UserLanguage.objects.create(user=finance, language="zh-hans")

    alerts.evaluate_account(firing.account, now=now)

    by_recipient = {tuple(envelope.rcpt_tos): envelope for envelope in smtp_server.envelopes}
    assert sorted(by_recipient) == [("finance@example.com",), ("oncall@example.com",)]
    chinese, english = (
        email.message_from_bytes(by_recipient[(address,)].content, policy=default_policy)
        for address in ("finance@example.com", "oncall@example.com")
    )
    chinese_text = chinese.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    chinese_html = chinese.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    english_text = english.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert str(english["Subject"]).strip().startswith("[Acme] Token balance 5.0% — runs out around ")
    assert str(chinese["Subject"]).strip().startswith("[Acme] Token 余额 5.0% — 预计 ")
    assert "剩余 token：5,000 / 100,000" in chinese_text and "Tokens left: 5,000 of 100,000" in english_text
    # The standard rule "Token balance low" goes by its Chinese name; 5% is its second tier of three.
    assert "TOKI 账户 Acme 的告警规则“Token 余额不足”开始告警（严重程度：严重）" in chinese_text
    assert "Tokens left" not in chinese_text and "runs out" not in chinese_text
    assert 'lang="zh-hans"' in chinese_html and "剩余 token" in chinese_html and "5,000 / 100,000" in chinese_html
    assert "打开仪表盘" in chinese_html
    figures = FIGURES.findall(english_text)
    assert figures and sorted(FIGURES.findall(chinese_text)) == sorted(figures)
    languages = dict(AlertDelivery.objects.values_list("target", "language"))
    assert languages == {"finance@example.com": "zh-hans", "oncall@example.com": "en"}


def test_a_failed_send_is_recorded_retried_and_shown(firing: AlertRule, now, settings, monkeypatch, make_user):
    retries: list[tuple[int, float]] = []
    monkeypatch.setattr(
        "billing.tasks.send_alert_delivery.apply_async",
        lambda args, countdown: retries.append((args[0], countdown)),
    )
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2  # nobody listens

    alerts.evaluate_account(firing.account, now=now)

    failed = AlertDelivery.objects.get()
    assert (failed.status, failed.attempts) == (DeliveryStatus.FAILED, 1)
    assert "ConnectionRefusedError" in failed.error
    assert retries == [(failed.pk, settings.ALERT_DELIVERY_RETRY_BASE_SECONDS)]
    admin = Client()
    admin.force_login(make_user("ada", Role.ADMIN))
    page = admin.get(reverse("billing:alerts")).content.decode()
    assert "ConnectionRefusedError" in page and "Failed (retrying)" in page

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert alerts.deliver(failed.pk) == DeliveryStatus.SENT  # what the retrying task does
    assert len(mail.outbox) == 1
    assert alerts.deliver(failed.pk) == DeliveryStatus.SENT  # a second delivery sends nothing
    assert len(mail.outbox) == 1


def test_after_the_last_attempt_the_email_is_marked_failed_for_good(firing: AlertRule, now, settings, monkeypatch):
    monkeypatch.setattr("billing.tasks.send_alert_delivery.apply_async", lambda args, countdown: None)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    settings.ALERT_DELIVERY_MAX_ATTEMPTS = 2
    alerts.evaluate_account(firing.account, now=now)
    email_id = AlertDelivery.objects.get().pk

    assert alerts.deliver(email_id) == DeliveryStatus.GAVE_UP
    assert alerts.deliver(email_id) == DeliveryStatus.GAVE_UP  # no third attempt
    assert AlertDelivery.objects.get().attempts == 2


# --- Scheduling and the command ----------------------------------------------------------------------


def test_ingested_batches_schedule_one_debounced_evaluation(transactional_db, account: Account, monkeypatch):
    queued: list[tuple[list, float]] = []
    monkeypatch.setattr(
        "billing.tasks.evaluate_account_alerts.apply_async", lambda args, countdown: queued.append((args, countdown))
    )
    from django.core.cache import cache

    cache.clear()
    now = timezone.now()
    for batch in range(3):
        ingest(account, record(f"b-{batch}", now - timedelta(minutes=batch), "gpt-4o", 10, 10, "0.01"))

    assert queued == [((account.pk,), 30.0)]


def test_the_command_evaluates_every_account_with_rules(firing: AlertRule):
    out = StringIO()
    call_command("evaluate_alerts", stdout=out)

    assert "acme: Token balance low: FIRING (high) — Token balance 5.0%" in out.getvalue()
    assert len(mail.outbox) == 1


# --- The page and the banner ------------------------------------------------------------------------------


def test_admin_creates_a_rule_and_sends_a_test_email(admin_client: Client, account: Account):
    members_with_emails(account, RECIPIENTS)
    response = admin_client.post(
        reverse("billing:alerts"),
        {
            "name": "Wallet low",
            "kind": AlertKind.WALLET_BELOW,
            "threshold": "25",
            "recipients": "finance@example.com\noncall@example.com",
            "cooldown_hours": "12",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    rule = AlertRule.objects.get(account=account)
    assert (rule.recipient_list, rule.cooldown_hours) == (RECIPIENTS, 12)

    response = admin_client.post(reverse("billing:test_alert_rule", args=[rule.pk]), follow=True)

    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "[Acme] Test: Wallet 0.00 USD — no run-out projected within a year"
    assert mail.outbox[0].to == RECIPIENTS
    assert "Test email sent to finance@example.com, oncall@example.com." in response.content.decode()
    assert AlertNotification.objects.get().kind == NotificationKind.TEST


def test_a_rule_with_a_bad_address_is_refused_with_the_reason(admin_client: Client, account: Account):
    response = admin_client.post(
        reverse("billing:alerts"),
        {
            "name": "x",
            "kind": AlertKind.WALLET_BELOW,
            "threshold": "1",
            "recipients": "not-an-address",
            "cooldown_hours": "0",
        },
    )

    assert response.status_code == 400
    assert "is not an email address" in response.content.decode()
    assert not AlertRule.objects.exists()


def test_admin_edits_a_rule(admin_client: Client, account: Account):
    rule = low_balance_rule(account)
    members_with_emails(account, ["a@example.com"])
    data = {
        "name": "Renamed",
        "kind": AlertKind.TOKEN_BALANCE_PERCENT,
        "threshold": "10",
        "recipients": "a@example.com",
    }

    response = admin_client.post(reverse("billing:edit_alert_rule", args=[rule.pk]), data | {"cooldown_hours": "0"})

    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.threshold, rule.recipient_list, rule.enabled) == ("Renamed", 10, ["a@example.com"], False)


@pytest.mark.parametrize("client_fixture", ["finance_client", "engineer_client"])
def test_finance_and_engineers_may_not_open_or_use_the_alerts_page(client_fixture, request, account: Account):
    client: Client = request.getfixturevalue(client_fixture)
    rule = low_balance_rule(account)

    assert client.get(reverse("billing:alerts")).status_code == 403
    assert client.post(reverse("billing:test_alert_rule", args=[rule.pk])).status_code == 403
    assert client.post(reverse("billing:alerts"), {"name": "x"}).status_code == 403
    assert mail.outbox == [] and AlertRule.objects.count() == 1


def test_every_page_shows_a_banner_while_a_rule_fires(firing: AlertRule, now, make_user):
    finance = Client()
    fiona = make_user("fiona", Role.FINANCE)
    Membership.objects.create(account=firing.account, user=fiona)
    finance.force_login(fiona)
    overview = reverse("usage:overview")
    assert 'id="alert-banner"' not in finance.get(overview).content.decode()

    alerts.evaluate_account(firing.account, now=now)

    page = finance.get(overview).content.decode()
    assert 'id="alert-banner"' in page and "Token balance 5.0%" in page and "Token balance low" in page


def test_the_forecast_chart_card_is_for_finance(finance_client: Client, engineer_client: Client, account: Account):
    response = finance_client.get(reverse("billing:forecast_chart"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-figure="forecast-token-chart"' in body and "<html" not in body
    assert engineer_client.get(reverse("billing:forecast_chart")).status_code == 403
