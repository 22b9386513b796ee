"""What the alert checks share: a check's outcome (`Check`), the facts an account's rules are
measured against, read once per evaluation (`Facts`), and the wording of moments and ranges."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.dateformat import format as date_format
from django.utils.translation import gettext as _

from billing.alert_tiers import effective_tiers, severity_label, tier_of
from billing.balances import AccountBalances, account_balances
from billing.budgets import spend as budget_spend
from billing.budgets.spend import BudgetStatus
from billing.forecast import AccountForecast, RunOut
from billing.models import AlertRule, Budget
from usage.models import Account
from usage.periods import dashboard_tz

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise
else:
    StrOrPromise = str

DETAIL_LIMIT = 12
Row = tuple["StrOrPromise", "StrOrPromise"]  # a label and its value, worded when read


@dataclass(frozen=True)
class Check:
    """The outcome of one rule: its tier (0: not firing), the figure, the subject line, the numbers."""

    tier: int
    value: Decimal | None
    summary: StrOrPromise  # worded when read (billing.alert_texts)
    details: list[Row] = field(default_factory=list)
    page: tuple[str, ...] = ("billing:plans", "billing:alerts")  # URL names, first that exists
    tiers: tuple[Decimal, ...] = ()
    # The balance a run-out figure is about ("token", "wallet"; stored with the episode) and the
    # balances already run out that another rule tells of now: an episode about one of those
    # closes without a "resolved" notification, a second word for the other rule's transition.
    balance: str = ""
    handed_over: tuple[str, ...] = ()

    @property
    def firing(self) -> bool:
        return self.tier > 0

    @property
    def severity(self) -> str:
        return severity_label(self.tier, len(self.tiers))

    @property
    def threshold(self) -> Decimal | None:
        """The tier crossed (the least severe one when not firing)."""
        if not self.tiers:
            return None
        return self.tiers[self.tier - 1] if self.tier else self.tiers[0]


def measured(
    rule: AlertRule,
    value: Decimal | None,
    summary: StrOrPromise,
    details: list[Row] | None = None,
    page: tuple[str, ...] | None = None,
    *,
    tier: int | None = None,
) -> Check:
    """The Check of a figure: its tier is worked out from the rule's tiers unless given."""
    tiers = tuple(effective_tiers(rule))
    found = tier_of(rule, value, tiers) if tier is None else tier
    check = Check(found, value, summary, details or [], tiers=tiers)
    return check if page is None else replace(check, page=page)


def quiet(rule: AlertRule, summary: StrOrPromise, details: list[Row] | None = None, **page: tuple[str, ...]) -> Check:
    """A rule that has nothing to measure now: it does not fire."""
    return measured(rule, None, summary, details, page.get("page"), tier=0)


def day_label(moment: datetime) -> str:
    """ "Fri 27 Nov" (11月27日 周五) in the dashboard's time zone and the active language."""
    local = moment.astimezone(dashboard_tz())
    return date_format(local, _("D j M"))


def moment_label(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(dashboard_tz())
    return f"{date_format(local, _('D j M Y, H:i'))} ({settings.DASHBOARD_TIME_ZONE})"


def percent_text(value: Decimal | float) -> str:
    """52.5 → "53%", 8.04 → "8.0%": whole percents once there are two digits (rounded half up)."""
    number = Decimal(value)
    places = Decimal(1) if abs(number) >= 10 else Decimal("0.1")
    return f"{number.quantize(places, rounding=ROUND_HALF_UP):,}%"


def already_run_out() -> str:
    """The words for a balance at or below zero now, in place of a run-out moment (which would
    be "now" and read as money left until today)."""
    return _("already run out (at or below zero)")


def runs_out(run_out: RunOut) -> str:
    if run_out.already:
        return already_run_out()
    if run_out.at is None:
        return _("no run-out projected within a year")
    return _("runs out around %(day)s") % {"day": day_label(run_out.at)}


def run_out_label(run_out: RunOut) -> str:
    """`moment_label` of a run-out, or its already-run-out words."""
    return already_run_out() if run_out.already else moment_label(run_out.at)


def run_out_range(run_out: RunOut) -> str:
    """`likely_range` of a run-out; none once it has already happened."""
    return "—" if run_out.already else likely_range(run_out.earliest, run_out.latest)


def likely_range(earliest: datetime | None, latest: datetime | None) -> str:
    if earliest is None and latest is None:
        return "—"
    return _("%(earliest)s to %(latest)s") % {
        "earliest": day_label(earliest) if earliest else "—",
        "latest": day_label(latest) if latest else _("later than a year"),
    }


class Facts:
    """What the rules of one account read, each computed once per evaluation. The balances
    and their forecast are `account_balances`: those of `balances_at`, or (None) the current
    ones every page, the banner and /api/v1/balance show."""

    def __init__(self, account: Account, now: datetime, *, balances_at: datetime | None = None) -> None:
        self.account = account
        self.now = now
        self.balances_at = balances_at
        self._budgets: dict[int, BudgetStatus] = {}

    @cached_property
    def balances(self) -> AccountBalances:
        return account_balances(self.account, at=self.balances_at)

    @cached_property
    def enabled_rules(self) -> list[AlertRule]:
        """The account's enabled rules, for a check that leaves a state to the rule made for it."""
        rules = AlertRule.objects.filter(account=self.account, enabled=True)
        return list(rules.select_related("account", "budget").order_by("pk"))

    @property
    def forecast(self) -> AccountForecast:
        return self.balances.forecast

    @property
    def wallet(self) -> Decimal:
        return self.balances.wallet_balance

    def budget_status(self, budget: Budget) -> BudgetStatus:
        """The budget's spend at the evaluation's moment (billing.budgets.spend, its one read)."""
        if budget.pk not in self._budgets:
            self._budgets[budget.pk] = budget_spend.status(budget, now=self.now, history=0)
        return self._budgets[budget.pk]
