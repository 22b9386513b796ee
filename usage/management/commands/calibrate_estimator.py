"""`manage.py calibrate_estimator [--account SLUG]`: refit the token estimator now and
re-estimate estimated records (README "Calibrated token estimation")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from usage.estimation.calibration import calibrate
from usage.models import Account


class Command(BaseCommand):
    help = "Refit the calibrated token estimator from records with reported usage, then re-estimate estimated records."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            metavar="SLUG",
            help="Re-estimate only this account's records (fits always learn from every account).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = None
        if options["account"]:
            account = Account.objects.filter(slug=options["account"]).first()
            if account is None:
                raise CommandError(f"No account with slug {options['account']!r}.")
        result = calibrate(account)
        if not result.fitted and not result.kept:
            self.stdout.write("Not enough records with reported usage and logged lengths to fit yet.")
        self.stdout.write(result.describe())
