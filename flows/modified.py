"""Trigger 2.2: an appointment was modified or rescheduled (admin, technician or customer),
including reassignment to another technician."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from fieldsync.pipeline import ConflictPolicy
from fieldsync.store.changes import AppointmentChange, apply_change
from fieldsync.store.db import session_scope
from flows.common import SyncResult, run_sync
from flows.naming import appointment_run_name
from tasks.sync_tasks import fetch_appointments


@task(name="apply-change", cache_policy=NO_CACHE)
def apply_appointment_change(appointment_id: str, change: AppointmentChange) -> bool:
    with session_scope() as session:
        return apply_change(session, appointment_id, change)


@flow(name="appointment-modified", flow_run_name=appointment_run_name, log_prints=True)
def appointment_modified(
    appointment_id: str,
    change: AppointmentChange | None = None,
    actor: str = "admin",
    force: bool = False,
    conflict_policy: ConflictPolicy | None = None,
) -> SyncResult:
    """With `change`, apply it first; without, the store already holds the new state (the
    intake wrote it) and this run only syncs it."""
    if change is not None:
        apply_appointment_change(appointment_id, change)
    ids = fetch_appointments([appointment_id])
    return run_sync(
        ids,
        label=f"modified {appointment_id} by {actor}",
        force=force,
        conflict_policy=conflict_policy,
    )
