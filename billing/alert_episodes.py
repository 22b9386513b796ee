"""Alert rules → episodes → notifications, a write service.

`evaluate_account(account)` checks every enabled rule of an account (`billing.alert_checks`)
and turns what changed into notifications, each claimed by a conditional UPDATE of the
episode so that several evaluators running at once send it once:

- a rule that starts firing opens an **episode** (at most one open per rule: a partial
  unique constraint, so two workers opening it at once end up with the same row) and
  claims its **firing** notification (`notified_at` was null);
- crossing into a more severe tier than any notified in this episode claims an
  **escalated** notification at once, whatever the cooldown (`notified_severity` was lower);
- staying in a tier claims a **reminder** every `cooldown_hours` (`last_notified_at` was
  older than that); falling back to a milder tier notifies nothing;
- when it stops firing, the episode is **resolved** by a conditional UPDATE of
  `resolved_at`; whoever resolves it sends the one "resolved" notification, if anything
  had been notified. A run-out rule's episode about a balance that has run out since and
  that the rule for that balance now tells of closes without one: that rule's notification
  is the one for the transition (`billing.alert_balance_checks.check_run_out`).

The claim and the notification's deliveries commit together; sending happens after the
commit (`billing.notify.deliveries`), never inside a transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import alert_texts
from billing.alert_checks import check_rule
from billing.alert_facts import Check, Facts
from billing.models import AlertEpisode, AlertNotification, AlertRule, NotificationKind
from billing.notify.deliveries import create_notification, send_after_commit
from toki_dashboard import background
from usage.models import Account

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    rule: AlertRule
    check: Check
    episode: AlertEpisode | None = None
    notifications: list[int] = field(default_factory=list)  # created by this evaluation


def details_of(check: Check) -> dict[str, Any]:
    """The check's rows and summary in the site's language, and in every language under "texts";
    a run-out's balance under "balance", which the episode remembers it was about."""
    more = {"balance": check.balance} if check.balance else {}
    return alert_texts.stored_details(
        check.summary, check.details, page=list(check.page), tiers=len(check.tiers), **more
    )


def subject(account: Account, kind: str, check: Check) -> str:
    """The subject line, worded when it is read (`billing.alert_texts.later`)."""

    def words() -> str:
        summary = str(check.summary)
        if kind == NotificationKind.ESCALATED:
            line = _("Worse (%(severity)s): %(summary)s") % {
                "severity": alert_texts.severity_name(check.severity),
                "summary": summary,
            }
        elif kind == NotificationKind.REMINDER:
            line = _("Still firing: %(summary)s") % {"summary": summary}
        elif kind == NotificationKind.RESOLVED:
            line = _("Resolved: %(summary)s") % {"summary": summary}
        elif kind == NotificationKind.TEST:
            line = _("Test: %(summary)s") % {"summary": summary}
        else:
            line = summary
        return f"[{account.name}] {line}"

    return alert_texts.later(words)


def _latest(check: Check, now: datetime) -> dict[str, Any]:
    return {
        "last_value": check.value,
        "last_summary": alert_texts.in_site_language(check.summary)[:300],
        "last_details": details_of(check),
        "last_evaluated_at": now,
    }


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
                summary=alert_texts.in_site_language(check.summary)[:300],
                details=details_of(check),
                severity=check.tier,
                **_latest(check, now),
            )
    except IntegrityError:
        return AlertEpisode.objects.get(rule=rule, resolved_at__isnull=True)


def _claim(
    episode: AlertEpisode, kind: str, claim: Q, update: dict[str, Any], check: Check
) -> AlertNotification | None:
    """Update the episode only if `claim` still holds; the winner records the notification."""
    rule = episode.rule
    with transaction.atomic():
        if AlertEpisode.objects.filter(claim, pk=episode.pk).update(**update) != 1:
            return None  # another worker has it
        return create_notification(
            account=rule.account,
            rule=rule,
            episode_id=episode.pk,
            kind=kind,
            tier=check.tier,
            severity=check.severity,
            value=check.value,
            threshold=check.threshold,
            subject=subject(rule.account, kind, check),
            details=details_of(check),
        )


def _while_firing(rule: AlertRule, episode: AlertEpisode, check: Check, now: datetime) -> AlertNotification | None:
    tier = check.tier
    still_open = Q(resolved_at__isnull=True)
    first = _claim(
        episode,
        NotificationKind.FIRING,
        still_open & Q(notified_at__isnull=True),
        {"notified_at": now, "notified_severity": tier, "last_notified_at": now},
        check,
    )
    if first is not None:
        return first
    worse = _claim(
        episode,
        NotificationKind.ESCALATED,
        still_open & Q(notified_at__isnull=False, notified_severity__lt=tier),
        {"notified_severity": tier, "last_notified_at": now},
        check,
    )
    if worse is not None or not rule.cooldown_hours:
        return worse
    return _claim(
        episode,
        NotificationKind.REMINDER,
        still_open & Q(notified_at__isnull=False, last_notified_at__lte=now - timedelta(hours=rule.cooldown_hours)),
        {"last_notified_at": now, "reminded_at": now},
        check,
    )


def _handed_over(episode: AlertEpisode, check: Check) -> bool:
    """The episode, as last told (`episode` is read before this evaluation's update), was about
    a balance that has run out since and that another rule tells of now: its notification is
    the one for this transition (`billing.alert_balance_checks.check_run_out`)."""
    about = (episode.last_details or {}).get("balance")
    return bool(about) and about in check.handed_over


def _resolve(rule: AlertRule, episode: AlertEpisode, check: Check, now: datetime) -> AlertNotification | None:
    with transaction.atomic():
        resolved = AlertEpisode.objects.filter(pk=episode.pk, resolved_at__isnull=True).update(
            resolved_at=now, **_latest(check, now)
        )
        notified = AlertEpisode.objects.filter(pk=episode.pk).values_list("notified_at", flat=True).first()
        if resolved != 1 or notified is None or _handed_over(episode, check):
            return None
        return create_notification(
            account=rule.account,
            rule=rule,
            episode_id=episode.pk,
            kind=NotificationKind.RESOLVED,
            severity="ok",
            value=check.value,
            threshold=check.threshold,
            subject=subject(rule.account, NotificationKind.RESOLVED, check),
            details=details_of(check),
        )


def evaluate_rule(rule: AlertRule, facts: Facts) -> Outcome:
    now = facts.now
    check = check_rule(rule, facts)
    outcome = Outcome(rule, check)
    AlertRule.objects.filter(pk=rule.pk).update(
        last_evaluated_at=now,
        last_value=check.value,
        last_summary=alert_texts.in_site_language(check.summary)[:300],
        last_texts=alert_texts.summary_texts(check.summary),
    )
    open_episode = AlertEpisode.objects.filter(rule=rule, resolved_at__isnull=True).first()
    notification = None
    if check.firing:
        episode = open_episode or _open_episode(rule, check, now)
        episode.rule = rule
        outcome.episode = episode
        AlertEpisode.objects.filter(pk=episode.pk).update(severity=check.tier, **_latest(check, now))
        notification = _while_firing(rule, episode, check, now)
    elif open_episode is not None:
        open_episode.rule = rule
        outcome.episode = open_episode
        notification = _resolve(rule, open_episode, check, now)
    if notification is not None:
        outcome.notifications.append(notification.pk)
        send_after_commit(notification)
    return outcome


def clock() -> datetime:
    """The moment an evaluation without one of its own runs at."""
    return timezone.now()


def evaluate_account(account: Account, *, now: datetime | None = None) -> list[Outcome]:
    """Check every enabled rule of the account; disabled rules' open episodes close without notice."""
    moment = now
    now = now or clock()
    AlertEpisode.objects.filter(account=account, resolved_at__isnull=True, rule__enabled=False).update(resolved_at=now)
    rules = list(
        AlertRule.objects.filter(account=account, enabled=True).select_related("account", "budget").order_by("pk")
    )
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
            background.enqueue("billing.tasks.evaluate_account_alerts", account_id, countdown=wait)

    transaction.on_commit(enqueue, robust=True)
