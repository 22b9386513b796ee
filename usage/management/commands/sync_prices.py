"""manage.py sync_prices: shared list prices from the installed genai-prices package."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from usage.pricing.list_prices import sync_prices


class Command(BaseCommand):
    help = (
        "Add or update the genai-prices price rows (every account, USD). Manual and provider "
        "prices are never touched; a changed price starts a new row, keeping the old one."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = sync_prices()
        self.stdout.write(
            self.style.SUCCESS(
                f"genai-prices: {result.added} added, {result.changed} changed, {result.unchanged} unchanged."
            )
        )
        if result.repricing:
            self.stdout.write(f"Repricing the records of {result.repricing} prices in the background.")
