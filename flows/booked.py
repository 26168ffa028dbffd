"""Trigger 2.1: a new appointment was booked (portal, phone, CRM or a platform)."""

from __future__ import annotations

from prefect import flow

from fieldsync.pipeline import ConflictPolicy
from flows.common import SyncResult, run_sync
from flows.naming import appointment_run_name
from tasks.sync_tasks import fetch_appointments


@flow(name="appointment-booked", flow_run_name=appointment_run_name, log_prints=True)
def appointment_booked(
    appointment_id: str, force: bool = False, conflict_policy: ConflictPolicy | None = None
) -> SyncResult:
    ids = fetch_appointments([appointment_id])
    return run_sync(
        ids, label=f"booked {appointment_id}", force=force, conflict_policy=conflict_policy
    )
