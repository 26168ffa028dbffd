"""Rescheduling options for dispatchers, and applying one in a single call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from fieldsync.options_service import NoOptions, Situation, describe, options_for
from fieldsync.rescheduling import Option
from fieldsync.store import reads
from fieldsync.store.changes import AppointmentChange, apply_change
from fieldsync.store.db import session_scope
from flows.common import SyncResult, run_sync
from flows.naming import appointment_run_name
from tasks.busy import busy_for


@task(name="find-options", cache_policy=NO_CACHE)
def find_options(
    appointment_id: str,
    situation: Situation,
    new_eta: datetime | None,
    limit: int,
    as_of: datetime | None = None,
) -> tuple[list[Option], list[str]]:
    with session_scope() as session:
        [job] = reads.jobs_by_ids(session, [appointment_id])
        technicians = reads.select_technicians(session)
    day = job.start.date()
    busy = busy_for([(t, [day - timedelta(days=1), day, day + timedelta(days=1)])
                     for t in technicians])  # fmt: skip
    with session_scope() as session:
        return options_for(
            session, appointment_id, situation, now=as_of or datetime.now(UTC), new_eta=new_eta,
            busy=busy, limit=limit,
        )  # fmt: skip


@flow(name="rescheduling-options", flow_run_name=appointment_run_name, log_prints=True)
def rescheduling_options(
    appointment_id: str,
    situation: Situation = "emergency",
    new_eta: datetime | None = None,
    limit: int = 5,
    as_of: datetime | None = None,
) -> list[dict[str, str]]:
    """Ranked options for an emergency, a cancellation, a delay or a conflict; each respects
    skills, shifts, travel, existing jobs and busy time. Also a table artifact in the UI.
    `as_of` plans from another moment than now (what-if, or a later day)."""
    options, notes = find_options(appointment_id, situation, new_eta, limit, as_of)
    rows = [describe(o) for o in options]
    create_table_artifact(
        key=f"options-{appointment_id.lower()}",
        table=rows or [{"rank": "", "why": "no feasible option"}],
        description=f"Rescheduling options ({situation}) for {appointment_id}. " + " ".join(notes),
    )
    for note in notes:
        print(note)
    return rows


@task(name="apply-option", cache_policy=NO_CACHE)
def apply_chosen(option: Option) -> list[str]:
    """The option's job to its new technician and time, and every job it moves."""
    with session_scope() as session:
        for move in option.moves:
            apply_change(session, move.job_id, AppointmentChange(start=move.new_start))
        apply_change(
            session, option.job_id,
            AppointmentChange(technician_id=option.technician_id, start=option.start,
                              end=option.end),
        )  # fmt: skip
    return [option.job_id, *(m.job_id for m in option.moves)]


@flow(name="apply-rescheduling-option", flow_run_name=appointment_run_name, log_prints=True)
def apply_rescheduling_option(
    appointment_id: str,
    rank: int = 1,
    situation: Situation = "emergency",
    new_eta: datetime | None = None,
    as_of: datetime | None = None,
) -> SyncResult:
    """Apply option `rank` as offered now, then sync every calendar it touches through the
    normal path (ledger, conflict check, one push per platform)."""
    options, _ = find_options(appointment_id, situation, new_eta, max(rank, 5), as_of)
    chosen = next((o for o in options if o.rank == rank), None)
    if chosen is None:
        raise NoOptions(f"no option {rank} for {appointment_id} ({situation}) any more")
    touched = apply_chosen(chosen)
    ids: Any = touched
    return run_sync(ids, label=f"applied option {rank} for {appointment_id}")
