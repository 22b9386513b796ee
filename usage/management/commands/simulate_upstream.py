"""`manage.py simulate_upstream [--port 9100]`: a local OpenAI-compatible API to try the
logging proxy against (usage.proxy.simulator lists what it does)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from usage.proxy import simulator


class Command(BaseCommand):
    help = "Serve a local OpenAI-compatible upstream (chat, completions, embeddings, responses; every error cause)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument("--delay", type=float, default=0.0, help="Seconds before each answer (thinking time)")
        parser.add_argument("--chunk-delay", type=float, default=0.0, help="Seconds between streamed chunks")
        parser.add_argument("--slow-seconds", type=float, default=30.0, help="How long model sim-slow takes")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(
            f"Simulated upstream on http://{options['host']}:{options['port']}/v1 "
            "(set an account's base URL to it; Ctrl-C stops it)"
        )
        simulator.run(
            options["host"],
            options["port"],
            delay=options["delay"],
            chunk_delay=options["chunk_delay"],
            slow_seconds=options["slow_seconds"],
            keep_log=False,
        )
