from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from usage.corrections import zero_failed_calls
from usage.models import Account, UsageRecord
from usage.signals import usage_revised


class Command(BaseCommand):
    help = (
        "Give stored failed calls without reported usage what ingestion gives them: no tokens and a cost "
        "of zero. Rollups move by the difference; allocations and the wallet follow in the background."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", help="account slug (default: every account)")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = Account.objects.order_by("pk")
        if options["account"]:
            accounts = accounts.filter(slug=options["account"])
            if not accounts:
                raise CommandError(f"No account with slug {options['account']!r}.")
        by_slug = {account.slug: account for account in accounts}
        corrections = zero_failed_calls(account_ids=[account.pk for account in by_slug.values()])
        for correction in corrections:
            self.stdout.write(correction.describe())
            usage_revised.send(
                sender=UsageRecord,
                account=by_slug[correction.slug],
                since=correction.since,
                reason="failed calls are no longer billed",
            )
        if not corrections:
            self.stdout.write("No failed call is billed: nothing to correct.")
