"""From a stored request of our own API back to its commands: what replaying a dead letter
after a fix runs. The same models validate it as on the way in."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from fieldsync.domain import AppointmentStatus
from fieldsync.inputs import field_errors
from fieldsync.intake.api_models import (
    BookingRequest,
    CancelRequest,
    RescheduleRequest,
    StatusRequest,
)
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Change, Command, StatusReport
from fieldsync.intake.sources.base import PayloadError
from fieldsync.store.changes import AppointmentChange

M = TypeVar("M", bound=BaseModel)
_APPOINTMENT = r"/v1/appointments/(?P<id>[^/]+)"


def _parse(model: type[M], body: str) -> M:
    try:
        return model.model_validate_json(body or "{}")
    except ValidationError as exc:
        raise PayloadError(field_errors(exc)) from exc


def _book(_: re.Match[str], body: str) -> list[Command]:
    return [Book(_parse(BookingRequest, body))]


def _modify(m: re.Match[str], body: str) -> list[Command]:
    change = _parse(AppointmentChange, body)
    return [Change(AppointmentRef(appointment_id=m["id"]), change)]


def reschedule_change(r: RescheduleRequest) -> AppointmentChange:
    return AppointmentChange(
        start=r.start, end=r.end, duration_minutes=r.duration_minutes, technician_id=r.technician_id
    )


def status_report(technician_id: str, report: StatusRequest) -> StatusReport:
    return StatusReport(
        report.appointment_id, technician_id, AppointmentStatus(report.status),
        eta=report.eta, completed_at=report.completed_at, note=report.note,
    )  # fmt: skip


def _reschedule(m: re.Match[str], body: str) -> list[Command]:
    change = reschedule_change(_parse(RescheduleRequest, body))
    return [Change(AppointmentRef(appointment_id=m["id"]), change)]


def _cancel(m: re.Match[str], body: str) -> list[Command]:
    reason = _parse(CancelRequest, body).reason if body.lstrip().startswith("{") else body
    return [Cancel(AppointmentRef(appointment_id=m["id"]), reason)]


_ROUTES: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], list[Command]]]] = [
    (re.compile(r"POST /v1/appointments"), _book),
    (re.compile(rf"PATCH {_APPOINTMENT}"), _modify),
    (re.compile(rf"POST {_APPOINTMENT}/reschedule"), _reschedule),
    (re.compile(rf"POST {_APPOINTMENT}/cancel"), _cancel),
]


def api_commands(route: str, body: str) -> list[Command]:
    """Commands of a stored API request. Option applications are not replayable: options
    describe one moment, and a later replay would apply a stale plan."""
    for pattern, build in _ROUTES:
        match = pattern.fullmatch(route)
        if match:
            return build(match, body)
    raise PayloadError(f"requests to {route!r} cannot be replayed; send them again instead")


def status_commands(technician_id: str, body: str) -> list[Command]:
    return [status_report(technician_id, _parse(StatusRequest, body))]
