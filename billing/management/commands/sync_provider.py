from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing import sync
from billing.models import SyncTrigger
from usage.models import Account, Provider


class Command(BaseCommand):
    help = "Sync accounts with their provider now (balance and, for newapi_console, request logs)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", help="account slug (default: every account with a provider to sync)")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = Account.objects.order_by("pk")
        if options["account"]:
            accounts = accounts.filter(slug=options["account"])
            if not accounts.exists():
                raise CommandError(f"No account {options['account']!r}.")
        else:
            accounts = accounts.exclude(provider=Provider.MANUAL)
        failed = 0
        for account in accounts:
            run = sync.sync_with_retries(account, trigger=SyncTrigger.COMMAND)
            if run is None:
                self.stdout.write(f"{account.slug}: a sync is already running.")
                continue
            line = (
                f"{account.slug}: {run.outcome} in {run.duration_ms or 0} ms, "
                f"{run.records_ingested} records added, {run.duplicates} duplicates"
            )
            if run.error:
                line += f" ({run.error})"
            self.stdout.write(line)
            failed += not run.ok
        if failed:
            raise CommandError(f"{failed} sync(s) failed.")
