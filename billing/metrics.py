"""`/metrics`: an account's figures in the Prometheus text format.

What the database knows is read at scrape time from the same selectors the API uses, so the
values equal the API's and no process has to hold them:

- `toki_usage_value_total{account,model,currency}`, `toki_tokens_total{account,model,kind}`
  (prompt, completion, cached) and `toki_requests_total{account,model,status_class}` (`ok`,
  `error`): `/api/v1/usage/summary` by model over all time (the rollups), with
  `toki_paid_total` and `toki_unpriced_requests_total` beside;
- `toki_token_balance{account}`, `toki_wallet_balance{account,currency}`,
  `toki_projected_runout_timestamp_seconds{account}` (and the wallet's): `/api/v1/balance`
  (`billing.balances`); a run-out nobody projects is left out, never written as 0;
  `toki_already_run_out{account,balance}` (`tokens`, `wallet`) is 1 when that balance is
  already at or below zero, its run-out timestamp then being the scrape's time;
- `toki_budget_ratio{account,budget}`: spent ÷ amount this period, as `/api/v1/budgets`; a
  budget whose spend cannot be counted (`counted` false there) is left out, never written as 0;
- `toki_alert_deliveries_total{account,channel,result}` and `toki_alert_firing{account,rule}`.

Counters the processes keep as they work (records ingested by source, proxy calls by status
class, budget refusals, the proxy's added-latency histogram; `usage.metrics`) are summed over
every process from PROMETHEUS_MULTIPROC_DIR; process metrics are the scraped process's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal

from django.db.models import Count
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from billing.balances import account_balances
from billing.budgets import spend
from billing.models import AlertDelivery, AlertEpisode, Budget
from usage import money
from usage.models import Account
from usage.periods import FIRST_DAY, LAST_DAY, Period

ALL_TIME = Period("custom", FIRST_DAY, LAST_DAY)


def _number(value: Decimal | int) -> float:
    return float(value)


class AccountCollector(Collector):
    """The account's figures, read when Prometheus scrapes."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def collect(self) -> Iterator[Metric]:
        yield from self._usage()
        yield from self._balances()
        yield from self._budgets()
        yield from self._alerts()

    def _usage(self) -> Iterator[Metric]:
        account, slug, currency = self.account, self.account.slug, self.account.currency
        rows, _ = money.summary(account=account, period=ALL_TIME, group_by="model")
        value = CounterMetricFamily(
            "toki_usage_value",
            "Usage value (price book × tokens), unpriced requests left out",
            labels=["account", "model", "currency"],
        )
        paid = CounterMetricFamily(
            "toki_paid", "Paid for the usage, in the account's currency", labels=["account", "model", "currency"]
        )
        tokens = CounterMetricFamily("toki_tokens", "Tokens used", labels=["account", "model", "kind"])
        requests = CounterMetricFamily("toki_requests", "Requests", labels=["account", "model", "status_class"])
        unpriced = CounterMetricFamily(
            "toki_unpriced_requests", "Requests without a price", labels=["account", "model"]
        )
        for row in rows:
            totals, model = row.totals, row.key
            value.add_metric([slug, model, currency], _number(totals.cost))
            if row.paid is not None:
                paid.add_metric([slug, model, currency], _number(row.paid.amount))
            for kind, count in (
                ("prompt", totals.prompt_tokens),
                ("completion", totals.completion_tokens),
                ("cached", totals.cached_tokens),
            ):
                tokens.add_metric([slug, model, kind], count)
            requests.add_metric([slug, model, "ok"], totals.requests - totals.errors)
            requests.add_metric([slug, model, "error"], totals.errors)
            unpriced.add_metric([slug, model], totals.unpriced_requests)
        yield from (value, paid, tokens, requests, unpriced)

    def _balances(self) -> Iterator[Metric]:
        slug = self.account.slug
        balances = account_balances(self.account)
        tokens = GaugeMetricFamily("toki_token_balance", "Tokens the plans in effect have left", labels=["account"])
        tokens.add_metric([slug], balances.token_balance)
        wallet = GaugeMetricFamily("toki_wallet_balance", "The wallet's balance", labels=["account", "currency"])
        wallet.add_metric([slug, balances.currency], _number(balances.wallet_balance))
        runout = GaugeMetricFamily(
            "toki_projected_runout_timestamp_seconds",
            "When the token balance is projected to run out (absent: not within a year)",
            labels=["account"],
        )
        wallet_runout = GaugeMetricFamily(
            "toki_wallet_projected_runout_timestamp_seconds",
            "When the wallet is projected to run out (absent: not within a year)",
            labels=["account"],
        )
        # The run-out timestamp of a balance already at or below zero is the scrape's time; this
        # tells it from one projected to run out right now.
        already = GaugeMetricFamily(
            "toki_already_run_out",
            "1 when the balance is already at or below zero (its run-out timestamp is then now), else 0",
            labels=["account", "balance"],
        )
        for name, run_out in (("tokens", balances.token_run_out), ("wallet", balances.wallet_run_out)):
            already.add_metric([slug, name], 1 if run_out.already else 0)
        if balances.token_run_out.at is not None:
            runout.add_metric([slug], balances.token_run_out.at.timestamp())
        if balances.wallet_run_out.at is not None:
            wallet_runout.add_metric([slug], balances.wallet_run_out.at.timestamp())
        yield from (tokens, wallet, runout, wallet_runout, already)

    def _budgets(self) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "toki_budget_ratio", "Spent ÷ amount in the budget's current period", labels=["account", "budget"]
        )
        for budget in Budget.objects.filter(account=self.account).select_related("account").order_by("name"):
            if spend.names_nothing(budget):
                continue  # no sample rather than a ratio of 0: its spend cannot be counted
            found = spend.status(budget, history=0)
            ratio.add_metric([self.account.slug, budget.name], _number(found.ratio.quantize(spend.RATIO_QUANTUM)))
        yield ratio

    def _alerts(self) -> Iterator[Metric]:
        slug = self.account.slug
        deliveries = CounterMetricFamily(
            "toki_alert_deliveries",
            "Alert deliveries by channel kind and result (sent, failed = retrying, gave_up, pending, sending)",
            labels=["account", "channel", "result"],
        )
        counted = (
            AlertDelivery.objects.filter(notification__account=self.account)
            .values("kind", "status")
            .annotate(n=Count("pk"))
            .order_by("kind", "status")
        )
        for row in counted:
            deliveries.add_metric([slug, row["kind"], row["status"]], row["n"])
        firing = GaugeMetricFamily(
            "toki_alert_firing",
            "Rules firing now, by the tier they are in (1 = least severe)",
            labels=["account", "rule"],
        )
        for name, tier in (
            AlertEpisode.objects.filter(account=self.account, resolved_at__isnull=True, rule__enabled=True)
            .values_list("rule__name", "severity")
            .order_by("rule__name")
        ):
            firing.add_metric([slug, name], tier)
        yield from (deliveries, firing)


def exposition(account: Account) -> bytes:
    """The text format of the account's figures, the processes' counters and this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AccountCollector(account))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        return generate_latest(registry)
    return generate_latest(registry) + generate_latest(REGISTRY)
