"""Rescheduling options for a job, and applying one in a single call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from fieldsync.intake.api.common import (
    ERRORS,
    ApiError,
    AppointmentId,
    Client,
    IdempotencyKey,
    IntakeState,
    State,
    answer,
    submit,
)
from fieldsync.intake.api_models import IntakeResponse, OptionOut, OptionsRequest, OptionsResponse
from fieldsync.intake.commands import AppointmentRef, Change, Command
from fieldsync.options_service import NoOptions, options_for
from fieldsync.rescheduling import Option
from fieldsync.store import reads
from fieldsync.store.changes import AppointmentChange
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment

router = APIRouter(prefix="/v1/appointments", tags=["rescheduling"])


def find_options(
    found: IntakeState, appointment_id: str, request: OptionsRequest
) -> tuple[list[Option], list[str]]:
    with session_scope(found.db_url) as session:
        if session.get(Appointment, appointment_id) is None:
            raise ApiError(404, f"no appointment {appointment_id!r}")
        [job] = reads.jobs_by_ids(session, [appointment_id])
        technicians = reads.select_technicians(session)
    busy = None
    if found.busy_reader is not None:
        day = job.start.date()
        busy = found.busy_reader(
            [(t, [day - timedelta(days=1), day, day + timedelta(days=1)]) for t in technicians]
        )
    with session_scope(found.db_url) as session:
        try:
            return options_for(
                session, appointment_id, request.situation,
                now=request.as_of or datetime.now(UTC), new_eta=request.new_eta, busy=busy,
                limit=request.limit,
            )  # fmt: skip
        except NoOptions as exc:
            raise ApiError(422, str(exc)) from exc


def option_out(o: Option) -> OptionOut:
    return OptionOut(
        rank=o.rank, technician_id=o.technician_id, appointment_id=o.job_id, start=o.start,
        end=o.end, travel_minutes=round(o.travel_minutes, 1),
        moves=[{"appointment_id": m.job_id, "from": m.old_start.isoformat(),
                "to": m.new_start.isoformat()} for m in o.moves],
        reason=o.reason,
    )  # fmt: skip


def option_commands(chosen: Option) -> list[Command]:
    """The moved jobs first, then the job itself on its new technician and time."""
    commands: list[Command] = [
        Change(AppointmentRef(appointment_id=m.job_id), AppointmentChange(start=m.new_start))
        for m in chosen.moves
    ]
    commands.append(
        Change(
            AppointmentRef(appointment_id=chosen.job_id),
            AppointmentChange(technician_id=chosen.technician_id, start=chosen.start,
                              end=chosen.end),
        )
    )  # fmt: skip
    return commands


@router.post("/{appointment_id}/options", response_model=OptionsResponse, responses=ERRORS)
def rescheduling_options(
    appointment_id: AppointmentId, request: OptionsRequest, client: Client, found: State
) -> OptionsResponse:
    """Ranked options for an emergency, a cancellation, a delay or a conflict. Each respects
    skills, shifts, travel time, existing jobs and (when readable) busy time."""
    options, notes = find_options(found, appointment_id, request)
    return OptionsResponse(
        appointment_id=appointment_id, situation=request.situation,
        options=[option_out(o) for o in options], notes=notes,
    )  # fmt: skip


@router.post(
    "/{appointment_id}/options/{rank}/apply", response_model=IntakeResponse, responses=ERRORS
)
def apply_option(
    appointment_id: AppointmentId,
    rank: Annotated[int, Path(ge=1, le=20)],
    request: OptionsRequest,
    client: Client,
    found: State,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Apply option `rank` as offered now: the job and every job it moves are changed in the
    store, and each one's calendars follow through the normal sync flows."""
    wider = request.model_copy(update={"limit": max(rank, request.limit)})
    options, _ = find_options(found, appointment_id, wider)
    chosen = next((o for o in options if o.rank == rank), None)
    if chosen is None:
        raise ApiError(422, f"there is no option {rank} for {appointment_id} any more")
    payload = (f"{request.model_dump_json()} option={rank} {chosen.technician_id} "
               f"{chosen.start.isoformat()}")  # fmt: skip
    receipt = submit(found, client, idempotency_key, payload,
                     f"POST /v1/appointments/{appointment_id}/options/{rank}/apply",
                     option_commands(chosen))  # fmt: skip
    return answer(receipt)
