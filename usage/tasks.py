"""Celery tasks of the usage app: load ids, call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from usage import partitions, rollups, statistics
from usage.estimation.calibration import calibrate
from usage.import_jobs.services import process_import
from usage.models import Account
from usage.pricing import repricing
from usage.proxy import recorder, spool


@shared_task
def rebuild_rollups(account_id: int) -> int:
    """Recount an account's hourly and daily rollups from its raw records (the admin's "Rebuild
    rollups" action); returns the number of hourly groups."""
    return rollups.rebuild(Account.objects.get(pk=account_id))


@shared_task
def reprice_records(scopes: list[dict[str, Any]]) -> int:
    """Recompute the cost of the records a price change affects; returns how many changed."""
    return repricing.reprice([repricing.Scope.from_json(scope) for scope in scopes])


@shared_task
def relabel_team_records(run_id: int) -> int:
    """Relabel the records a large team rename left (usage.teams.services.continue_rename)."""
    from usage.teams.services import continue_rename

    return continue_rename(run_id)


@shared_task
def calibrate_estimator(account_id: int | None = None) -> int:
    """Refit the token estimator and re-estimate estimated records; returns how many changed."""
    account = Account.objects.get(pk=account_id) if account_id is not None else None
    return calibrate(account).reestimated


@shared_task
def replay_proxy_spool() -> int:
    """Write the records the logging proxy spooled while the database was unavailable."""
    return spool.replay(recorder.store_records)


@shared_task
def maintain_usage_partitions() -> dict[str, Any]:
    """Daily: drop raw months past RAW_RETENTION_MONTHS, create the partitions ahead."""
    done = partitions.maintain()
    return {"created": done.created, "dropped": done.dropped, "deleted_rows": done.deleted_rows}


@shared_task
def refresh_statistics() -> list[str]:
    """ANALYZE the tables the pages read by account, after ingestion (usage.statistics)."""
    return statistics.refresh()


@shared_task
def run_usage_import(job_id: int) -> str | None:
    """Run an import uploaded on the Import page; returns its final state."""
    state = process_import(job_id)
    return state.value if state is not None else None
