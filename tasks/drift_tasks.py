"""Tasks of the drift-repair flow: read our events back, mark drift, judge the repair."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from fieldsync.store.db import session_scope
from fieldsync.sync import drift
from tasks.connectors import connector_for


@task(name="check-drift", cache_policy=NO_CACHE)
def check_drift(platform: str | None, days_ahead: int, now: datetime) -> list[drift.Check]:
    """Every synced event of the window, read back from its platform and compared."""
    lo, hi = drift.window(days_ahead, now)
    with session_scope() as session:
        watched = drift.select_synced(session, lo=lo, hi=hi, platform=platform)
    checks = drift.read_remote(watched, connector_for)
    found = sum(1 for c in checks if c.drift in (drift.Drift.DELETED, drift.Drift.EDITED))
    get_run_logger().info("%d events read back, %d drifted", len(checks), found)
    return checks


@task(name="mark-drift", cache_policy=NO_CACHE)
def mark_drift(checks: Sequence[drift.Check]) -> list[drift.Check]:
    with session_scope() as session:
        return drift.mark(session, checks)


@task(name="judge-repairs", cache_policy=NO_CACHE)
def judge_repairs(
    checks: Sequence[drift.Check],
    *,
    dry_run: bool,
    marked: Collection[int],
    held: Collection[str] = (),
    push_errors: Mapping[str, str] | None = None,
) -> list[drift.Repair]:
    """`marked`: ledger row ids marked by this run; `push_errors`: per platform whose push
    failed as a whole, why."""
    errors = push_errors or {}
    rows: Mapping[int, tuple[str, str | None, str | None]] = {}
    if marked:
        with session_scope() as session:
            rows = drift.ledger_after(session, list(marked))
    return [
        drift.judge(
            c, rows.get(c.watched.row_id), dry_run=dry_run, marked=c.watched.row_id in marked,
            held=held, push_error=errors.get(c.watched.binding.platform),
        )
        for c in checks
    ]  # fmt: skip
