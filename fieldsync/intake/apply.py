"""Apply intake commands to the store, inside the caller's transaction, and say which Prefect
events they owe. Nothing here commits: the request row, the change and its events land
together or not at all."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from fieldsync.domain import AppointmentStatus
from fieldsync.intake import outbox
from fieldsync.intake.commands import (
    AppointmentRef,
    Book,
    Cancel,
    Change,
    Command,
    Ignore,
    StatusReport,
)
from fieldsync.store.booking import book_in
from fieldsync.store.changes import AppointmentChange, InvalidChange, apply_change, apply_status
from fieldsync.store.tables import Appointment, Technician


class UnknownAppointment(LookupError):
    """A change, cancel or status report names a job the store does not hold."""


@dataclass
class Applied:
    appointment_ids: list[str] = field(default_factory=list)
    events: list[outbox.PendingEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    double_booked_with: list[str] = field(default_factory=list)
    created: bool = False


def resolve(session: Session, ref: AppointmentRef) -> Appointment:
    if ref.appointment_id is not None:
        found = session.get(Appointment, ref.appointment_id, with_for_update=True)
    else:
        found = session.scalars(
            select(Appointment)
            .where(Appointment.source == ref.source, Appointment.source_id == ref.source_id)
            .with_for_update()
        ).one_or_none()
    if found is None:
        raise UnknownAppointment(f"no {ref.describe()} is stored")
    return found


def _event_fields(appt: Appointment, actor: str) -> dict[str, object]:
    return {
        "technician_id": appt.technician_id or "",
        "actor": actor,
        "source": appt.source,
        "version": appt.version,
    }


def apply_commands(session: Session, commands: list[Command], *, actor: str) -> Applied:
    result = Applied()
    for command in commands:
        if isinstance(command, Ignore):
            result.notes.append(command.reason)
        elif isinstance(command, Book):
            _book(session, command, actor, result)
        elif isinstance(command, Change):
            _change(session, command, actor, result)
        elif isinstance(command, Cancel):
            _cancel(session, command, actor, result)
        else:
            _status(session, command, result)
    return result


def _book(session: Session, command: Book, actor: str, result: Applied) -> None:
    booking = book_in(session, command.booking)
    result.appointment_ids.append(booking.appointment_id)
    result.double_booked_with.extend(booking.double_booked_with)
    if booking.outcome == "unchanged":
        result.notes.append(f"appointment {booking.appointment_id} is already up to date")
        return
    appt = session.get(Appointment, booking.appointment_id)
    assert appt is not None
    result.created = result.created or booking.outcome == "created"
    name = outbox.BOOKED if booking.outcome == "created" else outbox.CHANGED
    result.events.append(outbox.appointment_event(name, appt.id, **_event_fields(appt, actor)))
    if booking.double_booked_with:
        ids = sorted([appt.id, *booking.double_booked_with])
        result.events.append(
            outbox.PendingEvent(
                outbox.CONFLICT,
                f"fieldsync.technician.{appt.technician_id}",
                {
                    "kind": "overlap",
                    "severity": "critical",
                    "appointment_ids": ids,
                    "detail": f"double-booking at intake: {' and '.join(ids)} overlap",
                },
            )
        )


def _change(session: Session, command: Change, actor: str, result: Applied) -> None:
    appt = resolve(session, command.ref)
    old_technician = appt.technician_id
    changed = apply_change(session, appt.id, command.change)
    if command.new_source_id is not None and command.new_source_id != appt.source_id:
        appt.source_id = command.new_source_id
    result.appointment_ids.append(appt.id)
    if not changed:
        result.notes.append(f"appointment {appt.id} is already up to date")
        return
    fields = _event_fields(appt, actor)
    if old_technician != appt.technician_id:
        fields["previous_technician_id"] = old_technician or ""
    result.events.append(outbox.appointment_event(outbox.CHANGED, appt.id, **fields))


def _cancel(session: Session, command: Cancel, actor: str, result: Applied) -> None:
    appt = resolve(session, command.ref)
    change = AppointmentChange(
        status=AppointmentStatus.CANCELED, notes=_with_reason(appt.notes, command.reason)
    )
    changed = apply_change(session, appt.id, change)
    result.appointment_ids.append(appt.id)
    if changed:
        result.events.append(
            outbox.appointment_event(
                outbox.CANCELED, appt.id, reason=command.reason, **_event_fields(appt, actor)
            )
        )
    else:
        result.notes.append(f"appointment {appt.id} was already canceled")


def _with_reason(notes: str, reason: str) -> str | None:
    if not reason or reason in notes:
        return None
    return f"{notes}\nCanceled: {reason}".strip()


def _status(session: Session, command: StatusReport, result: Applied) -> None:
    appt = resolve(session, AppointmentRef(appointment_id=command.appointment_id))
    if appt.technician_id != command.technician_id:
        raise InvalidChange(
            f"technician {command.technician_id} is not assigned to appointment {appt.id}"
        )
    if session.get(Technician, command.technician_id) is None:
        raise InvalidChange(f"unknown technician {command.technician_id!r}")
    changed = apply_status(
        session,
        appt.id,
        command.status,
        at=command.completed_at,
        eta=command.eta,
        note=command.note,
    )
    result.appointment_ids.append(appt.id)
    if not changed:
        result.notes.append(f"appointment {appt.id} already shows this status")
        return
    result.events.append(
        outbox.appointment_event(
            outbox.TECHNICIAN_STATUS,
            appt.id,
            status=command.status.value,
            eta=command.eta.isoformat() if command.eta else "",
            note=command.note,
            **_event_fields(appt, "technician"),
        )
    )
