"""Alert rules → episodes → email (DESIGN.md §7), a write service.

`evaluate_account(account)` checks every enabled rule of an account:

- a rule that starts firing opens an **episode** (at most one open per rule: a partial
  unique constraint, so two workers opening it at once end up with the same row) and
  **claims** its firing email with a conditional UPDATE of `notified_at`;
- while it keeps firing, one **reminder** is claimed the same way once `cooldown_hours`
  have passed since the firing email (`reminded_at`);
- when it stops firing, the episode is **resolved** by a conditional UPDATE of
  `resolved_at`; whoever resolves it sends the "resolved" email, if a firing email
  went out.

The claim and the AlertEmail row it creates commit together; the email itself is sent
after the commit (`transaction.on_commit`), never inside a transaction. A failed send
is recorded on its AlertEmail (attempts, error) and retried by a Celery task with
exponential backoff; the periodic evaluation also picks up emails a lost task left.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import TruncDate
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing.balances import AccountBalances, PlanBalance, account_balances
from billing.forecast import AccountForecast
from billing.models import (
    AlertEmail,
    AlertEmailKind,
    AlertEmailStatus,
    AlertEpisode,
    AlertKind,
    AlertRule,
    SyncState,
)
from billing.paid import paid_for_tokens
from usage.models import Account, ErrorCause, HourlyUsage, Provider, UsageRecord
from usage.templatetags.usage_format import money

logger = logging.getLogger(__name__)

DETAIL_LIMIT = 12
STALE_PENDING = timedelta(minutes=10)


# --- What a rule says now ------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The outcome of one rule: whether it fires, the figure, the subject line, the numbers."""

    firing: bool
    value: Decimal | None
    summary: str
    details: list[tuple[str, str]] = field(default_factory=list)
    page: tuple[str, ...] = ("billing:plans", "billing:alerts")  # URL names, first that exists


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.DASHBOARD_TIME_ZONE)


def day_label(moment: datetime) -> str:
    """ "Fri 27 Nov" in the dashboard's time zone."""
    local = moment.astimezone(_tz())
    return f"{local:%a} {local.day} {local:%b}"


def moment_label(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(_tz())
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} ({settings.DASHBOARD_TIME_ZONE})"


def _percent(value: Decimal | float) -> str:
    """52.5 → "53%", 8.04 → "8.0%": whole percents once there are two digits (rounded half up)."""
    number = Decimal(value)
    places = Decimal(1) if abs(number) >= 10 else Decimal("0.1")
    return f"{number.quantize(places, rounding=ROUND_HALF_UP):,}%"


def _runs_out(moment: datetime | None, earliest: datetime | None = None, latest: datetime | None = None) -> str:
    if moment is None:
        return "no run-out projected within a year"
    return f"runs out around {day_label(moment)}"


def _range(earliest: datetime | None, latest: datetime | None) -> str:
    if earliest is None and latest is None:
        return "—"
    return f"{day_label(earliest) if earliest else '—'} to {day_label(latest) if latest else 'later than a year'}"


class Facts:
    """What the rules of one account read, each computed once per evaluation. The balances
    and their forecast are `account_balances`: those of `balances_at`, or (None) the current
    ones every page, the banner and /api/v1/balance show."""

    def __init__(self, account: Account, now: datetime, *, balances_at: datetime | None = None) -> None:
        self.account = account
        self.now = now
        self.balances_at = balances_at

    @cached_property
    def balances(self) -> AccountBalances:
        return account_balances(self.account, at=self.balances_at)

    @property
    def forecast(self) -> AccountForecast:
        return self.balances.forecast

    @property
    def wallet(self) -> Decimal:
        return self.balances.wallet_balance


def _token_details(facts: Facts) -> list[tuple[str, str]]:
    balances = facts.balances
    forecast = balances.forecast
    rows = [
        ("Tokens left", f"{balances.token_balance:,} of {balances.tokens_granted:,}"),
        ("Burn rate", f"{forecast.burn_rate_tokens_per_day:,} tokens/day (projected, next 7 days)"),
        ("Projected run-out", moment_label(forecast.token_run_out.at)),
        ("Likely range (p10–p90)", _range(forecast.token_run_out.earliest, forecast.token_run_out.latest)),
    ]
    for plan in balances.plans_in_effect[:DETAIL_LIMIT]:
        rows.append(
            (
                f"Plan {plan.purchase.name}",
                f"{plan.tokens_remaining:,} of {plan.purchase.tokens:,} tokens left, "
                f"expires {day_label(plan.purchase.expires_at)}",
            )
        )
    return rows


def check_token_balance(rule: AlertRule, facts: Facts) -> Check:
    total, left = facts.balances.tokens_granted, facts.balances.token_balance
    if not total:
        return Check(False, None, "Token balance: no plan in effect")
    run_out = facts.forecast.token_run_out.at
    if rule.kind == AlertKind.TOKEN_BALANCE_PERCENT:
        value = (Decimal(left) * 100 / Decimal(total)).quantize(Decimal("0.01"))
        summary = f"Token balance {_percent(value)} — {_runs_out(run_out)}"
    else:
        value = Decimal(left)
        summary = f"Token balance {left:,} tokens — {_runs_out(run_out)}"
    return Check(value < rule.threshold, value, summary, _token_details(facts))


def check_wallet(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    currency = facts.account.currency
    value = facts.wallet
    details = [
        ("Wallet balance", f"{money(value)} {currency}"),
        ("Threshold", f"{money(rule.threshold)} {currency}"),
        ("Charged to the wallet", f"{money(forecast.wallet_burn_per_day)} {currency}/day (projected, next 7 days)"),
        ("Projected run-out", moment_label(forecast.wallet_run_out.at)),
        ("Likely range (p10–p90)", _range(forecast.wallet_run_out.earliest, forecast.wallet_run_out.latest)),
    ]
    summary = f"Wallet {money(value)} {currency} — {_runs_out(forecast.wallet_run_out.at)}"
    return Check(value < rule.threshold, value, summary, details)


def check_run_out(rule: AlertRule, facts: Facts) -> Check:
    forecast = facts.forecast
    token, wallet = forecast.token_run_out.at, forecast.wallet_run_out.at
    candidates = [(at, what) for at, what in ((token, "Token balance"), (wallet, "Wallet")) if at is not None]
    details = _token_details(facts) + [
        ("Wallet balance", f"{money(facts.wallet)} {facts.account.currency}"),
        ("Wallet run-out", moment_label(wallet)),
    ]
    if not candidates:
        return Check(False, None, "No run-out projected within a year", details)
    at, what = min(candidates)
    days = Decimal((at - facts.balances.at) / timedelta(days=1)).quantize(Decimal("0.1"))
    when = "within a day" if days < 1 else f"in {days:,} days"
    summary = f"{what} runs out around {day_label(at)} ({when})"
    return Check(days <= rule.threshold, days, summary, details)


def check_plan_expiring(rule: AlertRule, facts: Facts) -> Check:
    balances = facts.balances
    window = balances.at + timedelta(days=rule.days or 0)
    worst: tuple[Decimal, PlanBalance, int] | None = None
    details: list[tuple[str, str]] = []
    for plan in balances.plans_in_effect:
        if plan.purchase.expires_at > window:
            continue
        unused = plan.projected_unused if plan.projected_unused is not None else plan.tokens_remaining
        share = (Decimal(unused) * 100 / Decimal(plan.purchase.tokens)).quantize(Decimal("0.01"))
        value = paid_for_tokens(unused, plan.purchase)
        details.append(
            (
                f"Plan {plan.purchase.name}",
                f"expires {moment_label(plan.purchase.expires_at)}; {plan.tokens_remaining:,} tokens left, "
                f"{unused:,} ({_percent(share)}) projected unused, paid {money(value)} {plan.purchase.currency}",
            )
        )
        if worst is None or share > worst[0]:
            worst = (share, plan, unused)
    if worst is None:
        return Check(False, None, f"No plan expires within {rule.days or 0} days", details)
    share, plan, unused = worst
    summary = (
        f"{plan.purchase.name} expires {day_label(plan.purchase.expires_at)} "
        f"with {_percent(share)} unused ({unused:,} tokens)"
    )
    return Check(share > rule.threshold, share, summary, details[:DETAIL_LIMIT])


def check_sync(rule: AlertRule, facts: Facts) -> Check:
    account = facts.account
    page = ("billing:plans", "billing:alerts")
    if account.provider == Provider.MANUAL:
        return Check(False, None, "Provider sync: not configured (manual balances)", page=page)
    state = SyncState.objects.filter(account=account).first()
    last = state.last_success_at if state else None
    hours = Decimal((facts.now - last) / timedelta(hours=1)).quantize(Decimal("0.1")) if last else None
    details = [
        ("Last successful sync", moment_label(last)),
        ("Consecutive failures", f"{state.consecutive_failures if state else 0:,}"),
        ("Last error", (state.last_error[:300] if state and state.last_error else "—")),
    ]
    if state is not None and not state.credentials_valid:
        return Check(True, hours, "Provider sync failing: the console rejected the credentials", details, page)
    if state is not None and state.consecutive_failures >= 3:
        summary = f"Provider sync failing: {state.consecutive_failures} attempts in a row"
        return Check(True, hours, summary, details, page)
    if last is None:
        return Check(False, None, "Provider sync: no successful sync yet", details, page)
    stale = hours is not None and hours > rule.threshold
    return Check(stale, hours, f"Provider sync stale: last success {hours:,} hours ago", details, page)


def check_spend_spike(rule: AlertRule, facts: Facts) -> Check:
    account, now = facts.account, facts.now
    tz = _tz()
    recent = HourlyUsage.objects.filter(account=account, hour__gte=now - timedelta(hours=24), hour__lte=now)
    last_day = recent.aggregate(c=Sum("cost"))["c"] or Decimal(0)
    today = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    daily = (
        HourlyUsage.objects.filter(account=account, hour__gte=today - timedelta(days=14), hour__lt=today)
        .annotate(day=TruncDate("hour", tzinfo=tz))
        .values("day")
        .annotate(c=Sum("cost"))
    )
    totals = {row["day"]: row["c"] or Decimal(0) for row in daily}
    days = [totals.get((today - timedelta(days=i)).date(), Decimal(0)) for i in range(1, 15)]
    median = Decimal(statistics.median(days))
    currency = account.currency
    details = [
        ("Usage value in the last 24 hours", f"{money(last_day)} {currency} (price book × tokens)"),
        ("Median daily usage value, previous 14 days", f"{money(median)} {currency}"),
        ("Threshold", f"{rule.threshold:,}× the median"),
    ]
    page = ("usage:overview",)
    if median <= 0:
        summary = f"Usage value {money(last_day)} {currency} in 24 h (no median yet)"
        return Check(False, None, summary, details, page)
    ratio = (last_day / median).quantize(Decimal("0.01"))
    summary = f"Usage value {money(last_day)} {currency} in 24 h — {ratio:,}× the daily median"
    return Check(ratio > rule.threshold, ratio, summary, details, page)


def check_error_surge(rule: AlertRule, facts: Facts) -> Check:
    cause = rule.error_cause or ErrorCause.INSUFFICIENT_QUOTA
    since = facts.now - timedelta(hours=1)
    # A bounded window of the request log (index on account, occurred_at).
    count = UsageRecord.objects.filter(
        account=facts.account, occurred_at__gt=since, occurred_at__lte=facts.now, error_cause=cause
    ).count()
    details = [("Errors in the last hour", f"{count:,}"), ("Threshold", f"{rule.threshold:,.0f}")]
    summary = f"{count:,} {cause} errors in the last hour"
    return Check(count >= rule.threshold, Decimal(count), summary, details, ("usage:errors", "usage:overview"))


CHECKS = {
    AlertKind.TOKEN_BALANCE_PERCENT: check_token_balance,
    AlertKind.TOKEN_BALANCE_TOKENS: check_token_balance,
    AlertKind.WALLET_BELOW: check_wallet,
    AlertKind.RUNOUT_WITHIN: check_run_out,
    AlertKind.PLAN_EXPIRING_UNUSED: check_plan_expiring,
    AlertKind.SYNC_FAILING: check_sync,
    AlertKind.SPEND_SPIKE: check_spend_spike,
    AlertKind.ERROR_SURGE: check_error_surge,
}


def check_rule(rule: AlertRule, facts: Facts) -> Check:
    return CHECKS[AlertKind(rule.kind)](rule, facts)


def describe(rule: AlertRule) -> str:
    """The rule's condition in words, for the Alerts page."""
    t = rule.threshold
    currency = rule.account.currency
    number = f"{t.normalize():,f}"
    texts = {
        AlertKind.TOKEN_BALANCE_PERCENT: f"Token balance below {number}%",
        AlertKind.TOKEN_BALANCE_TOKENS: f"Token balance below {t:,.0f} tokens",
        AlertKind.WALLET_BELOW: f"Wallet below {money(t)} {currency}",
        AlertKind.RUNOUT_WITHIN: f"Projected run-out within {number} days",
        AlertKind.PLAN_EXPIRING_UNUSED: f"A plan expiring within {rule.days or 0} days with more than {number}% unused",
        AlertKind.SYNC_FAILING: f"Provider sync failing, or no success for {number} hours",
        AlertKind.SPEND_SPIKE: f"24-hour usage value above {number}× the daily median",
        AlertKind.ERROR_SURGE: f"{t:,.0f} or more {rule.error_cause or ErrorCause.INSUFFICIENT_QUOTA} errors an hour",
    }
    return texts.get(AlertKind(rule.kind), rule.get_kind_display())


# --- Episodes -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    rule: AlertRule
    check: Check
    episode: AlertEpisode | None = None
    emails: list[int] = field(default_factory=list)  # AlertEmail ids created by this evaluation


def _page_url(names: tuple[str, ...], account: Account) -> str:
    for name in names:
        try:
            path = reverse(name)
        except NoReverseMatch:
            continue
        return f"{settings.DASHBOARD_URL}{path}?{urlencode({'account': account.slug})}"
    return f"{settings.DASHBOARD_URL}/"


def _details_json(check: Check) -> dict[str, Any]:
    return {"rows": [list(row) for row in check.details], "page": list(check.page), "summary": check.summary}


def _open_episode(rule: AlertRule, check: Check, now: datetime) -> AlertEpisode:
    """The rule's open episode, opened now if there is none (a concurrent opener wins the race)."""
    found = AlertEpisode.objects.filter(rule=rule, resolved_at__isnull=True).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return AlertEpisode.objects.create(
                rule=rule,
                account_id=rule.account_id,
                started_at=now,
                value=check.value,
                summary=check.summary[:300],
                details=_details_json(check),
                last_value=check.value,
                last_summary=check.summary[:300],
                last_details=_details_json(check),
                last_evaluated_at=now,
            )
    except IntegrityError:
        return AlertEpisode.objects.get(rule=rule, resolved_at__isnull=True)


def _claim_email(
    episode: AlertEpisode, kind: str, claim: Q, update: dict[str, Any], subject: str, check: Check
) -> AlertEmail | None:
    """Set the episode's timestamp only if `claim` still holds; the winner records the email."""
    with transaction.atomic():
        claimed = AlertEpisode.objects.filter(claim, pk=episode.pk).update(**update)
        if claimed != 1:
            return None  # another worker has it
        return AlertEmail.objects.create(
            rule_id=episode.rule_id,
            episode=episode,
            kind=kind,
            recipients=episode.rule.allowed_recipients(),
            subject=subject[:300],
            details=_details_json(check),
        )


def _subject(account: Account, text: str) -> str:
    return f"[{account.name}] {text}"


def evaluate_rule(rule: AlertRule, facts: Facts) -> Outcome:
    now = facts.now
    check = check_rule(rule, facts)
    outcome = Outcome(rule, check)
    AlertRule.objects.filter(pk=rule.pk).update(
        last_evaluated_at=now, last_value=check.value, last_summary=check.summary[:300]
    )
    open_episode = AlertEpisode.objects.filter(rule=rule, resolved_at__isnull=True).first()
    if check.firing:
        episode = open_episode or _open_episode(rule, check, now)
        episode.rule = rule
        outcome.episode = episode
        AlertEpisode.objects.filter(pk=episode.pk).update(
            last_value=check.value,
            last_summary=check.summary[:300],
            last_details=_details_json(check),
            last_evaluated_at=now,
        )
        email = _claim_email(
            episode,
            AlertEmailKind.FIRING,
            Q(notified_at__isnull=True, resolved_at__isnull=True),
            {"notified_at": now},
            _subject(rule.account, check.summary),
            check,
        )
        if email is None and rule.cooldown_hours:
            email = _claim_email(
                episode,
                AlertEmailKind.REMINDER,
                Q(
                    reminded_at__isnull=True,
                    resolved_at__isnull=True,
                    notified_at__lte=now - timedelta(hours=rule.cooldown_hours),
                ),
                {"reminded_at": now},
                _subject(rule.account, f"Still firing: {check.summary}"),
                check,
            )
        if email is not None:
            outcome.emails.append(email.pk)
    elif open_episode is not None:
        outcome.episode = open_episode
        open_episode.rule = rule
        with transaction.atomic():
            resolved = AlertEpisode.objects.filter(pk=open_episode.pk, resolved_at__isnull=True).update(
                resolved_at=now,
                last_value=check.value,
                last_summary=check.summary[:300],
                last_details=_details_json(check),
                last_evaluated_at=now,
            )
            notified = AlertEpisode.objects.filter(pk=open_episode.pk).values_list("notified_at", flat=True).first()
            if resolved == 1 and notified is not None:
                email = AlertEmail.objects.create(
                    rule=rule,
                    episode=open_episode,
                    kind=AlertEmailKind.RESOLVED,
                    recipients=rule.allowed_recipients(),
                    subject=_subject(rule.account, f"Resolved: {check.summary}")[:300],
                    details=_details_json(check),
                )
                outcome.emails.append(email.pk)
    for email_id in outcome.emails:
        send_after_commit(email_id)
    return outcome


def evaluate_account(account: Account, *, now: datetime | None = None) -> list[Outcome]:
    """Check every enabled rule of the account; disabled rules' open episodes close without email."""
    moment = now
    now = now or timezone.now()
    AlertEpisode.objects.filter(account=account, resolved_at__isnull=True, rule__enabled=False).update(resolved_at=now)
    rules = list(AlertRule.objects.filter(account=account, enabled=True).select_related("account").order_by("pk"))
    if not rules:
        return []
    # Without an explicit moment the rules read the current balances, the ones every page shows.
    facts = Facts(account, now, balances_at=moment)
    outcomes = []
    for rule in rules:
        try:
            outcomes.append(evaluate_rule(rule, facts))
        except Exception:  # one broken rule must not silence the others
            logger.exception("alert rule %s of %s could not be evaluated", rule.pk, account.slug)
    return outcomes


def accounts_with_rules() -> list[int]:
    return list(
        AlertRule.objects.filter(enabled=True).values_list("account_id", flat=True).distinct().order_by("account_id")
    )


def schedule_evaluation(account_id: int, *, delay: float | None = None) -> None:
    """Evaluate the account's rules soon, once the current transaction commits; requests
    within `delay` seconds share one task (a cache lock)."""
    wait = settings.ALERTS_EVALUATION_DELAY_SECONDS if delay is None else delay
    key = f"billing:alerts:{connection.settings_dict['NAME']}:{account_id}"

    def enqueue() -> None:
        if cache.add(key, 1, timeout=max(1, int(wait))):
            from billing import tasks  # tasks imports this module

            tasks.evaluate_account_alerts.apply_async(args=[account_id], countdown=wait)

    transaction.on_commit(enqueue, robust=True)


# --- Email -------------------------------------------------------------------------------------


def email_context(email: AlertEmail) -> dict[str, Any]:
    rule = email.rule
    account = rule.account
    episode = email.episode
    details = email.details or {}
    page = tuple(details.get("page") or ("billing:plans", "billing:alerts"))
    return {
        "email": email,
        "rule": rule,
        "account": account,
        "episode": episode,
        "summary": details.get("summary") or email.subject,
        "rows": details.get("rows") or [],
        "page_url": _page_url(page, account),
        "alerts_url": _page_url(("billing:alerts",), account),
        "started": moment_label(episode.started_at) if episode else "",
        "resolved": moment_label(episode.resolved_at) if episode and episode.resolved_at else "",
        "time_zone": settings.DASHBOARD_TIME_ZONE,
    }


def build_message(email: AlertEmail) -> EmailMultiAlternatives:
    context = email_context(email)
    text = render_to_string("billing/email/alert.txt", context)
    html = render_to_string("billing/email/alert.html", context)
    message = EmailMultiAlternatives(
        subject=email.subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=list(email.recipients)
    )
    message.attach_alternative(html, "text/html")
    return message


def retry_delay(attempts: int) -> float:
    base = settings.ALERT_EMAIL_RETRY_BASE_SECONDS
    return min(settings.ALERT_EMAIL_RETRY_MAX_SECONDS, base * 2 ** max(attempts - 1, 0))


def deliver(email_id: int) -> str:
    """One delivery attempt of an email that is pending or failed; returns its new status.

    The attempt is claimed first (status → sending), so a retry and a sweep never send the
    same email at once. Call it outside any transaction: a mail server that is slow must
    not hold locks, and a rollback must not un-send a sent email.
    """
    now = timezone.now()
    claimed = AlertEmail.objects.filter(
        pk=email_id, status__in=[AlertEmailStatus.PENDING, AlertEmailStatus.FAILED]
    ).update(status=AlertEmailStatus.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
    if claimed != 1:
        return AlertEmail.objects.filter(pk=email_id).values_list("status", flat=True).first() or "missing"
    email = AlertEmail.objects.select_related("rule__account", "episode").get(pk=email_id)
    try:
        if not email.recipients:
            raise ValueError("the rule has no recipients")
        build_message(email).send(fail_silently=False)
    except Exception as exc:  # SMTP, socket and template errors alike are recorded and retried
        final = email.kind == AlertEmailKind.TEST or email.attempts >= settings.ALERT_EMAIL_MAX_ATTEMPTS
        status = AlertEmailStatus.GAVE_UP if final else AlertEmailStatus.FAILED
        error = f"{type(exc).__name__}: {exc}"[:2000]
        AlertEmail.objects.filter(pk=email_id).update(status=status, error=error)
        logger.warning("alert email %s failed (attempt %s): %s", email_id, email.attempts, error)
        return status
    AlertEmail.objects.filter(pk=email_id).update(status=AlertEmailStatus.SENT, sent_at=timezone.now(), error="")
    return AlertEmailStatus.SENT


def send_now(email_id: int) -> str:
    """Try at once; on failure hand the email to the retrying task."""
    status = deliver(email_id)
    if status == AlertEmailStatus.FAILED:
        attempts = AlertEmail.objects.filter(pk=email_id).values_list("attempts", flat=True).first() or 1
        try:
            from billing import tasks

            tasks.send_alert_email.apply_async(args=[email_id], countdown=retry_delay(attempts))
        except Exception:  # the broker is down: the periodic sweep retries it
            logger.exception("could not enqueue the retry of alert email %s", email_id)
    return status


def send_after_commit(email_id: int) -> None:
    transaction.on_commit(lambda: send_now(email_id), robust=True)


def resend_stuck(*, now: datetime | None = None) -> int:
    """Emails a lost task left behind: pending for a while, or failed and not retried in time."""
    now = now or timezone.now()
    stuck = AlertEmail.objects.filter(
        Q(status=AlertEmailStatus.PENDING, created_at__lt=now - STALE_PENDING)
        | Q(
            status=AlertEmailStatus.FAILED,
            last_attempt_at__lt=now - timedelta(seconds=settings.ALERT_EMAIL_RETRY_MAX_SECONDS * 2),
        )
    ).values_list("pk", flat=True)[:100]
    ids = list(stuck)
    for email_id in ids:
        send_now(email_id)
    return len(ids)


def send_test_email(rule: AlertRule) -> AlertEmail:
    """Evaluate the rule now (without touching its episodes) and send what it says to its
    recipients, once, at once: whoever clicked wants to know now whether mail arrives."""
    facts = Facts(rule.account, timezone.now())
    check = check_rule(rule, facts)
    rows = [("Right now the rule", "fires" if check.firing else "does not fire"), *check.details]
    email = AlertEmail.objects.create(
        rule=rule,
        kind=AlertEmailKind.TEST,
        recipients=rule.allowed_recipients(),
        subject=_subject(rule.account, f"Test: {check.summary}")[:300],
        details={"rows": [list(r) for r in rows], "page": list(check.page), "summary": check.summary},
    )
    AlertRule.objects.filter(pk=rule.pk).update(
        last_evaluated_at=facts.now, last_value=check.value, last_summary=check.summary[:300]
    )
    deliver(email.pk)
    email.refresh_from_db()
    return email
