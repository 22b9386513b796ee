"""Backtest of the run-out forecast (billing.forecast) against a straight-line projection.

For each series and each forecast origin, a balance is chosen so that the true run-out
is exactly 3, 7 or 14 days later (the sum of the consumption actually seen over those
days); the forecast sees only the complete days before the origin. The error is the
distance between the predicted and the true run-out, in days. The baseline is what a
plain dashboard does: balance ÷ the mean of the last 7 days. Also reported: how often
the true run-out falls inside the forecast's p10–p90 range (ideally about 80%).

Series: steady (±10% noise), growing (+2% a day), weekly (quiet weekends), bursty
(heavy-tailed days with spikes), and the demo data set's daily tokens
(usage.demo, the same generator as `manage.py seed_demo`, aggregated without a database).

    .venv/bin/python bench/forecast.py [--days 120] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toki_dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("TOKI_VAR_DIR", tempfile.mkdtemp(prefix="toki-bench-forecast-"))
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from billing.forecast import DayUsage, ForecastInputs, PlanState, forecast_from_inputs  # noqa: E402

HORIZONS = (3, 7, 14)
FIRST_ORIGIN = 35  # five weeks of history before the first forecast
END = datetime(2026, 6, 1, tzinfo=UTC)


def synthetic(kind: str, days: int, rng: random.Random) -> list[float]:
    values = []
    for t in range(days):
        weekday = (END - timedelta(days=days - t)).weekday()
        if kind == "steady":
            v = 1e6 * rng.gauss(1, 0.1)
        elif kind == "growing":
            v = 1e6 * (1 + 0.02 * t) * rng.gauss(1, 0.1)
        elif kind == "weekly":
            v = (1.25e6 if weekday < 5 else 0.35e6) * rng.gauss(1, 0.1)
        else:  # bursty
            v = 1e6 * rng.lognormvariate(0, 0.5) * (4 if rng.random() < 0.08 else 1)
        values.append(max(v, 0.0))
    return values


def demo_series(days: int, seed: int) -> list[float]:
    from usage import demo

    window = demo.DemoWindow.ending(END, days=days, seed=seed)
    totals: dict[date, float] = defaultdict(float)
    for row in demo.records_in_window(window):
        usage = row.get("usage") or {}
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        at = row["occurred_at"]
        occurred = (at if isinstance(at, datetime) else datetime.fromisoformat(at)).astimezone(UTC).date()
        totals[occurred] += tokens
    first = (END - timedelta(days=days)).date()
    return [totals.get(first + timedelta(days=i), 0.0) for i in range(days)]


def backtest(values: list[float]) -> dict[int, dict[str, list[float]]]:
    days = len(values)
    first_day = (END - timedelta(days=days)).date()
    results: dict[int, dict[str, list[float]]] = {h: defaultdict(list) for h in HORIZONS}
    for origin in range(FIRST_ORIGIN, days - max(HORIZONS)):
        now = datetime.combine(first_day + timedelta(days=origin), datetime.min.time(), tzinfo=UTC)
        history = [
            DayUsage(day=first_day + timedelta(days=i), model="m", tokens=round(values[i])) for i in range(origin)
        ]
        recent = statistics.fmean(values[origin - 7 : origin])
        for horizon in HORIZONS:
            balance = sum(values[origin : origin + horizon])
            if balance <= 0:
                continue
            plan = PlanState(
                id=1,
                tokens=round(balance),
                remaining=round(balance),
                effective_at=now - timedelta(days=origin),
                expires_at=now + timedelta(days=130),  # after the 120-day horizon: never the limit
            )
            result = forecast_from_inputs(
                ForecastInputs(now=now, history=history, plans=[plan], wallet_balance=Decimal(0), horizon_days=120)
            )
            run_out = result.token_run_out
            predicted = (run_out.at - now) / timedelta(days=1) if run_out.at else 120.0
            baseline = balance / recent if recent > 0 else 120.0
            results[horizon]["forecast"].append(abs(predicted - horizon))
            results[horizon]["baseline"].append(abs(baseline - horizon))
            earliest = (run_out.earliest - now) / timedelta(days=1) if run_out.earliest else 0.0
            latest = (run_out.latest - now) / timedelta(days=1) if run_out.latest else 1e9
            results[horizon]["covered"].append(1.0 if earliest <= horizon <= latest else 0.0)
    return results


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 10 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(
        f"# Forecast backtest — {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{args.days} days per series, seed {args.seed}; origins from day {FIRST_ORIGIN}; errors in days\n")
    print("| series | ahead | forecast MAE | baseline MAE | forecast p90 | baseline p90 | in p10–p90 range | origins |")
    print("|---|---|---|---|---|---|---|---|")
    started = time.perf_counter()
    series = {kind: synthetic(kind, args.days, rng) for kind in ("steady", "growing", "weekly", "bursty")}
    series["demo"] = demo_series(min(args.days, 90), 1)
    with ProcessPoolExecutor() as pool:  # one series per CPU
        all_results = dict(zip(series, pool.map(backtest, series.values()), strict=True))
    for name, results in all_results.items():
        for horizon in HORIZONS:
            r = results[horizon]
            if not r["forecast"]:
                continue
            mae, base = statistics.fmean(r["forecast"]), statistics.fmean(r["baseline"])
            print(
                f"| {name} | {horizon} d | {mae:.2f} | {base:.2f} "
                f"| {p90(r['forecast']):.2f} | {p90(r['baseline']):.2f} "
                f"| {100 * statistics.fmean(r['covered']):.0f}% | {len(r['forecast'])} |"
            )
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
