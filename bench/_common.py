"""What the benchmarks share: Django set-up from a database URL, the machine they ran on,
realistic ingestion records (docs/api.md, Ingestion record) and the prices that make them cost money."""

from __future__ import annotations

import os
import platform
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
BENCH_DATABASE_URL = "postgres://toki:toki@127.0.0.1:5432/toki_bench"
BENCH_ENV = {
    "SECRET_KEY": "bench-secret-key-not-for-production-use-0123456789",
    "DEBUG": "false",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "LOG_LEVEL": "WARNING",
    "FIELD_ENCRYPTION_KEY": "bench",
}

# (model, share of traffic, prompt tokens median, completion median, input $/Mtok, cached, output $/Mtok)
MODELS: tuple[tuple[str, float, int, int, str, str, str], ...] = (
    ("gpt-4o-mini", 0.34, 900, 220, "0.15", "0.075", "0.60"),
    ("gpt-4o", 0.18, 1800, 380, "2.50", "1.25", "10.00"),
    ("deepseek-chat", 0.16, 1400, 420, "0.27", "0.07", "1.10"),
    ("claude-3-5-sonnet", 0.10, 2600, 520, "3.00", "0.30", "15.00"),
    ("qwen-max", 0.08, 1200, 300, "1.60", "0.40", "6.40"),
    ("o3-mini", 0.07, 1500, 900, "1.10", "0.55", "4.40"),
    ("text-embedding-3-small", 0.05, 400, 0, "0.02", "0.02", "0.00"),
    ("gemini-2.0-flash", 0.02, 1100, 260, "0.10", "0.025", "0.40"),
)
TEAMS = ("search", "support-bot", "data", "growth", "platform")
FEATURES = ("chat", "summarise", "classify", "extract", "translate", "agent")
KEYS_PER_TEAM = 4
# (status, error body or None, share among failed calls)
ERRORS: tuple[tuple[int, dict[str, str] | None, float], ...] = (
    (429, {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "Rate limit reached"}, 0.40),
    (429, {"type": "insufficient_quota", "code": "insufficient_quota", "message": "You exceeded your quota"}, 0.10),
    (401, {"type": "invalid_request_error", "code": "invalid_api_key", "message": "Incorrect API key"}, 0.08),
    (404, {"type": "invalid_request_error", "code": "model_not_found", "message": "The model does not exist"}, 0.07),
    (400, {"type": "invalid_request_error", "code": "unsupported_parameter", "message": "temperature"}, 0.10),
    (500, {"type": "server_error", "code": "internal_error", "message": "The server had an error"}, 0.15),
    (502, None, 0.10),
)
ERROR_RATE = 0.03
ESTIMATED_RATE = 0.08  # records that carry lengths and profiles but no usage


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database `database_url` names when it does not exist yet."""
    if not database_url.startswith("postgres"):
        return
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def setup_django(database_url: str) -> None:
    """Configure Django for a benchmark process against `database_url` (production settings);
    the database is created when missing."""
    ensure_database(database_url)
    os.environ.update(BENCH_ENV)
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)  # embedded mode: no broker needed
    os.environ.setdefault("TOKI_VAR_DIR", str(ROOT / "var" / "bench"))
    Path(os.environ["TOKI_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toki_dashboard.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def machine() -> str:
    """One line naming the machine and software the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()} {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load}"
    )


def _profile(chars: int, rng: random.Random, cjk_share: float) -> dict[str, int]:
    cjk = int(chars * cjk_share)
    rest = chars - cjk
    letters = int(rest * 0.68)
    spaces = int(rest * 0.16)
    digits = int(rest * 0.04)
    punct = int(rest * 0.10)
    return {
        "cjk": cjk,
        "letters": letters,
        "digits": digits,
        "spaces": spaces,
        "punct": punct,
        "other": rest - letters - spaces - digits - punct,
    }


def generate_records(
    count: int, *, days: float = 60, seed: int = 1, prefix: str = "bench", end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """`count` ingestion records spread over the `days` before `end`, oldest first.

    Several models with their own size and share of traffic, keys grouped by team,
    3% failed calls of the common causes, 8% without usage (lengths and character-class
    profiles only, so tokens are estimated), cached and reasoning tokens, latencies.
    """
    rng = random.Random(seed)
    end = (end or datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    start = end - timedelta(days=days)
    span = (end - start).total_seconds()
    models = [m[0] for m in MODELS]
    weights = [m[1] for m in MODELS]
    sizes = {m[0]: (m[2], m[3]) for m in MODELS}
    keys = [(f"{team}-key-{n}", team) for team in TEAMS for n in range(1, KEYS_PER_TEAM + 1)]
    error_choices = [e[:2] for e in ERRORS]
    error_weights = [e[2] for e in ERRORS]
    step = span / max(count, 1)
    for index in range(count):
        moment = start + timedelta(seconds=index * step + rng.random() * step)
        model = rng.choices(models, weights)[0]
        key, team = keys[rng.randrange(len(keys))]
        prompt_median, completion_median = sizes[model]
        prompt = max(1, int(rng.lognormvariate(0, 0.7) * prompt_median))
        completion = int(rng.lognormvariate(0, 0.6) * completion_median)
        record: dict[str, Any] = {
            "request_id": f"{prefix}-{seed}-{index:09d}",
            "occurred_at": moment.isoformat(),
            "model": model,
            "api_key": f"name:{key}",  # generated key names, declared as names
            "stream": rng.random() < 0.4,
            "latency_ms": int(200 + completion * rng.uniform(8, 25)),
            "metadata": {"team": team, "user": f"user{rng.randrange(60)}", "feature": rng.choice(FEATURES)},
        }
        if record["stream"]:
            record["ttft_ms"] = int(rng.uniform(150, 900))
        if model.startswith("text-embedding"):
            record["endpoint"] = "/v1/embeddings"
        if rng.random() < ERROR_RATE:
            _fail(record, rng, error_choices, error_weights)
        elif rng.random() < ESTIMATED_RATE:
            record.update(_lengths_only(rng, model, prompt, completion))
        else:
            record["usage"] = _reported_usage(rng, model, prompt, completion)
        yield record


def _fail(record: dict[str, Any], rng: random.Random, choices: list[Any], weights: list[float]) -> None:
    """Make `record` a failed call of one of the common causes."""
    status, error = rng.choices(choices, weights)[0]
    record["status_code"] = status
    if error is not None:
        record["error"] = dict(error)
    record["latency_ms"] = int(rng.uniform(30, 400))
    record.pop("ttft_ms", None)


def _lengths_only(rng: random.Random, model: str, prompt: int, completion: int) -> dict[str, Any]:
    """Lengths and character-class profiles instead of usage, so the tokens are estimated."""
    context_chars = prompt * 4
    output_chars = completion * 4
    cjk_share = 0.6 if model in ("qwen-max", "deepseek-chat") else 0.02
    return dict(
        context_chars=context_chars,
        context_bytes=int(context_chars * (1 + 2 * cjk_share)),
        output_chars=output_chars,
        output_bytes=int(output_chars * (1 + 2 * cjk_share)),
        message_count=rng.randint(1, 12),
        context_profile=_profile(context_chars, rng, cjk_share),
        output_profile=_profile(output_chars, rng, cjk_share),
    )


def _reported_usage(rng: random.Random, model: str, prompt: int, completion: int) -> dict[str, Any]:
    """The usage a provider reports, with cached and reasoning tokens now and then."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if rng.random() < 0.3:
        usage["prompt_tokens_details"] = {"cached_tokens": int(prompt * rng.uniform(0.2, 0.9))}
    if model == "o3-mini":
        usage["completion_tokens_details"] = {"reasoning_tokens": int(completion * 0.6)}
    return usage


def ensure_prices(account: Any) -> None:
    """Manual prices for the generated models, so records are priced (idempotent)."""
    from usage.models import ModelPrice, PriceSource

    since = datetime(2020, 1, 1, tzinfo=UTC)
    known = set(ModelPrice.objects.filter(account=account).values_list("model_pattern", flat=True))
    # bulk_create sends no signals: nothing to reprice, the records come afterwards.
    ModelPrice.objects.bulk_create(
        [
            ModelPrice(
                account=account,
                model_pattern=model,
                effective_from=since,
                input_per_mtok=Decimal(input_rate),
                cached_input_per_mtok=Decimal(cached_rate),
                output_per_mtok=Decimal(output_rate),
                currency=account.currency,
                source=PriceSource.MANUAL,
            )
            for model, _share, _p, _c, input_rate, cached_rate, output_rate in MODELS
            if model not in known
        ]
    )


def postgres_setting(name: str) -> str:
    """A setting of the PostgreSQL server the benchmark runs against (`SHOW name`)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return str(cursor.fetchone()[0])


def ensure_account(slug: str = "bench") -> Any:
    from usage.models import Account
    from usage.services import create_account

    account = Account.objects.filter(slug=slug).first()
    if account is None:
        account = create_account(name=slug.title(), slug=slug, currency="USD")
    ensure_prices(account)
    return account


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
