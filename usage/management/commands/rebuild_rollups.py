from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from usage import rollups
from usage.models import Account, RawRetention


class Command(BaseCommand):
    help = "Check the hourly rollups against a recount of the raw records, and rebuild them if asked."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", help="account slug (default: every account)")
        parser.add_argument("--verify-only", action="store_true", help="report differences, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = Account.objects.all()
        if options["account"]:
            accounts = accounts.filter(slug=options["account"])
            if not accounts:
                raise CommandError(f"No account with slug {options['account']!r}.")
        failed = False
        kept_from = RawRetention.kept_from_now()
        if kept_from is not None:
            self.stdout.write(
                f"Raw records are kept from {kept_from:%Y-%m-%d %H:%M} UTC (RAW_RETENTION_MONTHS): the rollups "
                "before it are all that is left of those records and are neither checked nor rebuilt."
            )
        for account in accounts:
            mismatches = rollups.verify(account)
            if not mismatches:
                self.stdout.write(f"{account.slug}: rollups match the records.")
                continue
            self.stdout.write(f"{account.slug}: {len(mismatches)} hourly groups differ from a recount.")
            for m in mismatches[:10]:
                self.stdout.write(f"  {m.group}: stored {m.stored} vs recount {m.recounted}")
            if options["verify_only"]:
                failed = True
                continue
            groups = rollups.rebuild(account)
            remaining = rollups.verify(account)
            self.stdout.write(f"{account.slug}: rebuilt {groups} groups; {len(remaining)} differ afterwards.")
            failed |= bool(remaining)
        if failed:
            raise CommandError("Rollups do not match the records.")
