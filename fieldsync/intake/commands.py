"""What an accepted request asks the store to do, whatever shape it arrived in.

Every source (our own API, Calendly, Acuity, HubSpot, Jobber, Housecall Pro, ServiceTitan, a
technician's phone) is turned into a list of these commands; one function applies them to the
store in the same transaction that records the request and its outgoing events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fieldsync.domain import AppointmentStatus
from fieldsync.inputs import AppointmentInput
from fieldsync.store.changes import AppointmentChange


@dataclass(frozen=True, slots=True)
class AppointmentRef:
    """Which job a command is about: our id, or the source's own id for it."""

    source: str | None = None
    source_id: str | None = None
    appointment_id: str | None = None

    def __post_init__(self) -> None:
        if self.appointment_id is None and (self.source is None or self.source_id is None):
            raise ValueError("an AppointmentRef needs appointment_id, or source and source_id")

    def describe(self) -> str:
        if self.appointment_id is not None:
            return f"appointment {self.appointment_id}"
        return f"{self.source} appointment {self.source_id!r}"


@dataclass(frozen=True, slots=True)
class Book:
    """Create the job, or bring it up to date if (source, source_id) is already stored."""

    booking: AppointmentInput


@dataclass(frozen=True, slots=True)
class Change:
    """Modify or reschedule an existing job. `new_source_id` re-keys it, for sources whose
    reschedule gives the job a new id (Calendly cancels the old invitee and creates a new one)."""

    ref: AppointmentRef
    change: AppointmentChange
    new_source_id: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    ref: AppointmentRef
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A technician's report from the field: en route, started, done, delayed, canceled."""

    appointment_id: str
    technician_id: str
    status: AppointmentStatus
    eta: datetime | None = None
    completed_at: datetime | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Ignore:
    """Accepted and recorded, nothing to change: e.g. the cancel half of a Calendly
    reschedule, or a HubSpot meeting that is not a field job."""

    reason: str


Command = Book | Change | Cancel | StatusReport | Ignore
