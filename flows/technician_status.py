"""Trigger 2.3: a technician reports a job completed, delayed (with a new ETA) or canceled."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from fieldsync.domain import AppointmentStatus
from fieldsync.pipeline import ConflictPolicy
from fieldsync.store.changes import InvalidChange, apply_status
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment
from flows.common import SyncResult, run_sync
from flows.naming import appointment_run_name
from tasks.sync_tasks import fetch_appointments

TechnicianStatus = Literal["en_route", "in_progress", "completed", "delayed", "canceled"]


@task(name="apply-status", cache_policy=NO_CACHE)
def apply_technician_status(
    appointment_id: str,
    status: TechnicianStatus,
    technician_id: str | None,
    eta: datetime | None,
    completed_at: datetime | None,
    note: str,
) -> bool:
    with session_scope() as session:
        appt = session.get(Appointment, appointment_id)
        if appt is not None and technician_id and appt.technician_id != technician_id:
            raise InvalidChange(
                f"technician {technician_id} is not assigned to appointment {appointment_id}"
            )
        return apply_status(
            session,
            appointment_id,
            AppointmentStatus(status),
            at=completed_at,
            eta=eta,
            note=note,
        )


@flow(name="technician-status", flow_run_name=appointment_run_name, log_prints=True)
def technician_status_update(
    appointment_id: str,
    status: TechnicianStatus,
    technician_id: str | None = None,
    eta: datetime | None = None,
    completed_at: datetime | None = None,
    note: str = "",
    force: bool = False,
    conflict_policy: ConflictPolicy | None = None,
    applied: bool = False,
) -> SyncResult:
    """A delay moves the event and re-checks the technician's later jobs that day: the conflict
    step sees the whole day and alerts on any knock-on overlap or travel squeeze.

    `applied=True` when the intake already stored the report (event-triggered runs): this run
    then only syncs, so it can never overwrite a later change with this older report."""
    if not applied:
        apply_technician_status(appointment_id, status, technician_id, eta, completed_at, note)
    ids = fetch_appointments([appointment_id])
    return run_sync(
        ids,
        label=f"status {status} for {appointment_id}",
        force=force,
        conflict_policy=conflict_policy,
    )
