"""Booking with the store as referee: two bookings racing for one technician's slot never
both pass as clean. The second one is stored and flagged as a double-booking.

Bookings for one technician are serialized in the database, not by timing in the app:
PostgreSQL locks the technician's row (SELECT ... FOR UPDATE) for the transaction; SQLite takes
its write lock up front (BEGIN IMMEDIATE). Each booking then sees every booking committed before
it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from fieldsync.conflicts import ConflictFinding
from fieldsync.domain import OPEN_STATUSES
from fieldsync.inputs import AppointmentInput
from fieldsync.store.conflict_store import record_findings
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, Technician
from fieldsync.store.writes import Outcome, UnknownTechnicianError, upsert_appointment


@dataclass
class Booking:
    appointment_id: str
    outcome: Outcome
    double_booked_with: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.double_booked_with)


def book(
    data: AppointmentInput,
    *,
    db_url: str | None = None,
    after_check: Callable[[], None] | None = None,
) -> Booking:
    """Store a booking in its own transaction. `after_check` runs between the overlap check and
    the write; tests use it to hold the race window open."""
    with session_scope(db_url) as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE"))
        return book_in(session, data, after_check=after_check)


def book_in(
    session: Session, data: AppointmentInput, *, after_check: Callable[[], None] | None = None
) -> Booking:
    """The booking inside a caller's transaction (the intake adds its inbox and outbox rows).
    On SQLite the caller must have begun it with BEGIN IMMEDIATE."""
    if data.technician_id is not None:
        locked = session.execute(
            select(Technician.id).where(Technician.id == data.technician_id).with_for_update()
        ).first()
        if locked is None:
            raise UnknownTechnicianError(data.technician_id)
    clashes = _overlapping(session, data)
    if after_check is not None:
        after_check()
    appointment, outcome = upsert_appointment(session, data)
    session.flush()
    if clashes and data.technician_id is not None:
        ids = tuple(sorted([*clashes, appointment.id]))
        record_findings(
            session,
            [ConflictFinding(
                data.technician_id, "overlap", "critical", ids,
                # Symmetric, so either side's re-delivery is the same conflict.
                f"double-booking at intake: {' and '.join(ids)} overlap",
            )],
            # Nothing is marked resolved here: only the full engine in the flows sees enough.
            (),
        )  # fmt: skip
    return Booking(appointment.id, outcome, clashes)


def _overlapping(session: Session, data: AppointmentInput) -> list[str]:
    if data.technician_id is None or data.status not in OPEN_STATUSES:
        return []
    stmt = (
        select(Appointment.id)
        .where(Appointment.technician_id == data.technician_id)
        .where(Appointment.status.in_([s.value for s in OPEN_STATUSES]))
        .where(Appointment.start < data.resolved_end, Appointment.end > data.start)
        .where(Appointment.id != data.resolved_id)
        .order_by(Appointment.start)
    )
    return list(session.scalars(stmt))
