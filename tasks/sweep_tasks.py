"""Tasks of the conflict sweep (detection and alerting reuse the sync flows' tasks)."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from fieldsync.store.db import session_scope
from fieldsync.sweep import sweep_job_ids


@task(name="select-sweep", cache_policy=NO_CACHE)
def select_sweep(days_ahead: int, region: str | None, now: datetime) -> list[str]:
    with session_scope() as session:
        return sweep_job_ids(session, days_ahead=days_ahead, now=now, region=region)
