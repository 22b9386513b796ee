from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing import alerts
from usage.models import Account


class Command(BaseCommand):
    help = "Evaluate the alert rules now (what the scheduler does every 5 minutes) and send the emails due."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", help="only this account's rules (slug); default: every account")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["account"]:
            accounts = list(Account.objects.filter(slug=options["account"]))
            if not accounts:
                raise CommandError(f"No account with the slug {options['account']!r}.")
        else:
            accounts = list(Account.objects.filter(pk__in=alerts.accounts_with_rules()).order_by("pk"))
        resent = alerts.resend_stuck()
        notified = 0
        for account in accounts:
            for outcome in alerts.evaluate_account(account):
                state = f"FIRING ({outcome.check.severity})" if outcome.check.firing else "ok"
                notified += len(outcome.notifications)
                self.stdout.write(f"{account.slug}: {outcome.rule.name}: {state} — {outcome.check.summary}")
        self.stdout.write(
            f"{len(accounts)} account(s) evaluated; {notified} notification(s), {resent} deliveries retried."
        )
