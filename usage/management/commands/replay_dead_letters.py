"""manage.py replay_dead_letters: store again the records set aside as dead letters."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from usage import deadletters
from usage.models import Account


class Command(BaseCommand):
    help = (
        "Replay open dead letters (records that could not be stored as they were) after a fix: "
        "each one stored, or found already stored, is resolved; running it again changes nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", help="only this account's dead letters (its slug)")
        parser.add_argument("--id", type=int, action="append", dest="ids", help="only this dead letter (repeatable)")

    def handle(self, *args: Any, **options: Any) -> None:
        letters = deadletters.open_letters().select_related("account").order_by("pk")
        if options["account"]:
            account = Account.objects.filter(slug=options["account"]).first()
            if account is None:
                raise CommandError(f"No account with slug {options['account']!r}.")
            letters = letters.filter(account=account)
        if options["ids"]:
            letters = letters.filter(pk__in=options["ids"])
        summary = deadletters.replay(letters)
        for pk, reason in summary.still_failing:
            self.stderr.write(f"dead letter {pk}: {reason}")
        self.stdout.write(f"Replayed: {summary.describe()}; {deadletters.open_count():,} still open.")
