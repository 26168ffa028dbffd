"""Booking, reading, changing, rescheduling and canceling jobs: the API the online portal,
the phone desk and the CRM call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response

from fieldsync.intake.api.common import (
    ERRORS,
    ApiError,
    AppointmentId,
    Client,
    IdempotencyKey,
    State,
    answer,
    submit,
)
from fieldsync.intake.api_models import (
    BookingRequest,
    CancelRequest,
    ErrorResponse,
    IntakeResponse,
    RescheduleRequest,
)
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Change
from fieldsync.intake.stored_requests import reschedule_change
from fieldsync.store.changes import AppointmentChange
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment

router = APIRouter(prefix="/v1/appointments", tags=["appointments"])


@router.post(
    "",
    status_code=201,
    response_model=IntakeResponse,
    responses={200: {"model": IntakeResponse}, **ERRORS},
)
def create_appointment(
    booking: BookingRequest, client: Client, found: State, idempotency_key: IdempotencyKey = None
) -> Response:
    """Book a job. A repeat for the same `source` and `source_id` updates it instead."""
    receipt = submit(found, client, idempotency_key, booking.model_dump_json(),
                     "POST /v1/appointments", [Book(booking)])  # fmt: skip
    return answer(receipt, created_status=201)


@router.get(
    "/{appointment_id}",
    responses={404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
)
def get_appointment(appointment_id: AppointmentId, client: Client, found: State) -> dict[str, Any]:
    with session_scope(found.db_url) as session:
        appt = session.get(Appointment, appointment_id)
        if appt is None:
            raise ApiError(404, f"no appointment {appointment_id!r}")
        return {
            "id": appt.id, "source": appt.source, "source_id": appt.source_id,
            "technician_id": appt.technician_id, "status": appt.status,
            "job_type": appt.job_type, "start": appt.start.isoformat(),
            "end": appt.end.isoformat(), "address": appt.address,
            "customer_name": appt.customer_name, "version": appt.version,
            "notes": appt.notes, "status_note": appt.status_note,
        }  # fmt: skip


@router.patch("/{appointment_id}", response_model=IntakeResponse, responses=ERRORS)
def modify_appointment(
    appointment_id: AppointmentId,
    change: AppointmentChange,
    client: Client,
    found: State,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Change any of the job's fields; omitted fields stay as they are."""
    ref = AppointmentRef(appointment_id=appointment_id)
    receipt = submit(found, client, idempotency_key, change.model_dump_json(),
                     f"PATCH /v1/appointments/{appointment_id}", [Change(ref, change)])  # fmt: skip
    return answer(receipt)


@router.post("/{appointment_id}/reschedule", response_model=IntakeResponse, responses=ERRORS)
def reschedule_appointment(
    appointment_id: AppointmentId,
    request: RescheduleRequest,
    client: Client,
    found: State,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Move the job; it keeps its length unless `end` or `duration_minutes` says otherwise."""
    ref = AppointmentRef(appointment_id=appointment_id)
    receipt = submit(found, client, idempotency_key, request.model_dump_json(),
                     f"POST /v1/appointments/{appointment_id}/reschedule",
                     [Change(ref, reschedule_change(request))])  # fmt: skip
    return answer(receipt)


@router.post("/{appointment_id}/cancel", response_model=IntakeResponse, responses=ERRORS)
def cancel_appointment(
    appointment_id: AppointmentId,
    client: Client,
    found: State,
    idempotency_key: IdempotencyKey = None,
    request: Annotated[CancelRequest | None, Body()] = None,
) -> Response:
    reason = request.reason if request else ""
    ref = AppointmentRef(appointment_id=appointment_id)
    receipt = submit(found, client, idempotency_key, reason,
                     f"POST /v1/appointments/{appointment_id}/cancel",
                     [Cancel(ref, reason)])  # fmt: skip
    return answer(receipt)
