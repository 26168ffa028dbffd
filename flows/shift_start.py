"""Trigger 2.4: at shift start, reconcile every job of the shift in one run."""

from __future__ import annotations

from datetime import date

from prefect import flow

from fieldsync.pipeline import ConflictPolicy
from flows.common import SyncResult, run_sync
from flows.naming import shift_run_name
from tasks.sync_tasks import select_shift


@flow(name="shift-start", flow_run_name=shift_run_name, log_prints=True)
def shift_start_sync(
    shift_date: date | None = None,
    region: str | None = None,
    technician_id: str | None = None,
    force: bool = False,
    conflict_policy: ConflictPolicy | None = None,
) -> SyncResult:
    """All jobs of a region's (or one technician's) shift: open ones pushed, canceled and
    reassigned ones removed, unchanged ones left alone."""
    ids = select_shift(shift_date, region, technician_id)
    label = f"shift start {shift_date or 'today'} {technician_id or region or 'all regions'}"
    return run_sync(ids, label=label, whole_days=True, force=force, conflict_policy=conflict_policy)
