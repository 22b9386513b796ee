"""manage.py sync_models: read the provider's model list (and prices) into the model catalogue now."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing import model_sync
from usage.catalogue.models import CatalogueSync, CatalogueTrigger
from usage.models import Account


class Command(BaseCommand):
    help = (
        "Read each account's model list and published prices into the model catalogue: new models "
        "are added, missing ones flagged removed, changed prices start a new price-book row."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", help="account slug (default: every account whose models can be listed)")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = Account.objects.order_by("pk")
        if options["account"]:
            accounts = accounts.filter(slug=options["account"])
            if not accounts.exists():
                raise CommandError(f"No account {options['account']!r}.")
        else:
            accounts = accounts.filter(pk__in=[a.pk for a in accounts if model_sync.lists_models(a)])
            if not accounts.exists():
                self.stdout.write(
                    "No account lists its models: that takes a New API console, or a relay key (api_key) "
                    "in the account's credentials. Name one with --account to see why."
                )
                return
        failed = 0
        for account in accounts:
            run = model_sync.sync_with_retries(account, trigger=CatalogueTrigger.COMMAND)
            if run is None:
                self.stdout.write(f"{account.slug}: a model sync is already running.")
                continue
            self.stdout.write(_line(account, run))
            failed += not run.ok
        if failed:
            raise CommandError(f"{failed} model sync(s) failed.")


def _line(account: Account, run: CatalogueSync) -> str:
    if not run.ok:
        return f"{account.slug}: {run.outcome}: {run.error}"
    line = (
        f"{account.slug}: {run.models_listed} models listed ({run.source}), {run.added} new, "
        f"{run.removed} removed, {run.returned} back; prices: {run.prices_added} new, {run.prices_changed} changed"
    )
    return line + (f" ({run.error})" if run.error else "")
