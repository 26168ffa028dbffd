"""On an interval: re-check the coming days for conflicts and alert what is new. Pushes nothing.

Jobs rarely change alone: a delay, a new personal event on a technician's own calendar, a
material running out of stock. The sweep catches what no booking event triggered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_table_artifact

from fieldsync.alerts import conflict_table
from fieldsync.conflicts import ConflictFinding
from fieldsync.parameters import check_aware, check_days_ahead
from flows.common import check_and_alert
from flows.naming import artifact_key, conflict_sweep_run_name
from tasks.sweep_tasks import select_sweep


@dataclass
class SweepResult:
    jobs: int = 0
    conflicts: list[ConflictFinding] = field(default_factory=list)
    new_alerts: int = 0  # alerted now: new, changed, or owed since a channel was down
    summary: str = ""


@flow(name="conflict-sweep", flow_run_name=conflict_sweep_run_name, log_prints=True)
def conflict_sweep(
    days_ahead: int = 2, region: str | None = None, as_of: datetime | None = None
) -> SweepResult:
    """Every active technician's (or one region's) jobs over `days_ahead` local days from
    today, through the sync flows' engine path: enrich → busy time → detect → alert. Each alert
    is also a `fieldsync.conflict.detected` event (sent by the alert task) for automations.
    `as_of` sweeps from another moment than now."""
    check_days_ahead(days_ahead)
    check_aware("as_of", as_of)
    now = as_of or datetime.now(UTC)
    job_ids = select_sweep(days_ahead, region, now)
    checked = check_and_alert(job_ids, whole_days=True)
    outcome, alerted = checked.outcome, checked.alerted
    where = f"region {region}" if region else "all regions"
    summary = (
        f"conflict sweep of {where}, {days_ahead} days from {now.date().isoformat()}: "
        f"{len(job_ids)} jobs, {len(outcome.findings)} conflicts, {alerted} alerted now"
    )
    create_table_artifact(
        key=artifact_key(f"conflict-sweep-{region or 'all'}"),
        table=conflict_table(outcome.findings),
        description=summary,
    )
    print(summary)
    return SweepResult(len(job_ids), outcome.findings, alerted, summary)
