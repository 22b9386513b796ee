"""What remembering the parameters each model accepted costs ingestion (README "Logging proxy",
"What each model accepts").

    .venv/bin/python bench/accepted_parameters.py [--records 20000] [--batch 1000]
                                                  [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

In one run, the same generated records (bench/_common.generate_records, each given 0 to 4
optional parameter names as the proxy records them) go through `record_usage` in batches of
--batch into two accounts, batch by batch in turns so that both arms see the same machine
load: one with `note_accepted_parameters` as shipped, the baseline with it replaced by a
no-op. Prints each arm's records per second, the difference per batch, and the load average.
The database must be disposable (it is migrated; the two bench accounts are emptied).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, generate_records, machine, setup_django

NAMES = ("tools", "response_format", "temperature", "seed", "stream_options", "logprobs", "max_tokens", "n")


def with_parameters(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [record | {"parameters": rng.sample(NAMES, rng.randint(0, 4))} for record in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    args = parser.parse_args()

    setup_django(args.database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bench.ingest import empty_account
    from usage import services
    from usage.models import AcceptedParameter
    from usage.schemas import RecordIn

    shipped = services.note_accepted_parameters
    arms = {"with": empty_account("bench-params"), "baseline": empty_account("bench-params-off")}
    AcceptedParameter.objects.filter(account__in=list(arms.values())).delete()
    batches: dict[str, list[list[tuple[int, RecordIn]]]] = {}
    for name in arms:
        records = with_parameters(list(generate_records(args.records, days=30, prefix=f"params-{name}")), seed=7)
        validated = [RecordIn.model_validate(r) for r in records]
        batches[name] = [list(enumerate(validated[i : i + args.batch])) for i in range(0, len(validated), args.batch)]

    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for index in range(len(batches["with"])):
        order = ("with", "baseline") if index % 2 == 0 else ("baseline", "with")
        for name in order:
            services.note_accepted_parameters = shipped if name == "with" else (lambda account, rows, stage=None: None)
            started = time.perf_counter()
            services.record_usage(arms[name], batches[name][index], source="proxy")
            seconds[name].append(time.perf_counter() - started)
    services.note_accepted_parameters = shipped

    print(machine())
    for name in arms:
        total = sum(seconds[name])
        median_ms = statistics.median(seconds[name]) * 1000
        print(f"{name:>8}: {args.records / total:,.0f} records/s, median batch of {args.batch}: {median_ms:.1f} ms")
    differences = [(a - b) * 1000 for a, b in zip(seconds["with"], seconds["baseline"], strict=True)]
    overhead = sum(seconds["with"]) / sum(seconds["baseline"]) - 1
    print(
        f"overhead: {overhead:+.1%} of ingestion time; per batch median {statistics.median(differences):+.1f} ms "
        f"({len(AcceptedParameter.objects.filter(account=arms['with']))} (model, parameter) rows kept)"
    )


if __name__ == "__main__":
    main()
