"""Changes the trigger flows apply to an appointment before syncing it.

A change that alters nothing leaves the version alone, so re-delivered triggers cost nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from fieldsync.domain import OPEN_STATUSES, AppointmentStatus, Priority
from fieldsync.store.tables import Appointment, Technician
from fieldsync.store.writes import assign_changed

Actor = Literal["admin", "technician", "customer", "system"]


class InvalidChange(ValueError):
    pass


class AppointmentChange(BaseModel):
    """A modification or reschedule. Omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = Field(None, description="New start, with its UTC offset.")
    end: AwareDatetime | None = Field(None, description="New end, with its UTC offset.")
    duration_minutes: int | None = Field(None, gt=0, le=24 * 60)
    technician_id: str | None = Field(None, description="Reassign to this technician.")
    job_type: str | None = None
    priority: Priority | None = None
    status: AppointmentStatus | None = None
    address: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    notes: str | None = None
    customer_name: str | None = None
    customer_phone: str | None = None
    customer_email: str | None = None

    @model_validator(mode="after")
    def _times_agree(self) -> AppointmentChange:
        if self.start and self.end and self.end <= self.start:
            raise ValueError(
                f"end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )
        return self


def _load(session: Session, appointment_id: str) -> Appointment:
    appt = session.get(Appointment, appointment_id, with_for_update=True)
    if appt is None:
        raise InvalidChange(f"no appointment with id {appointment_id}")
    return appt


def _set(appt: Appointment, values: dict[str, Any]) -> bool:
    changed = assign_changed(appt, values)
    if changed:
        appt.version += 1
    return changed


def apply_change(session: Session, appointment_id: str, change: AppointmentChange) -> bool:
    appt = _load(session, appointment_id)
    values: dict[str, Any] = change.model_dump(
        exclude_none=True, exclude={"start", "end", "duration_minutes"}
    )
    if "technician_id" in values and session.get(Technician, values["technician_id"]) is None:
        raise InvalidChange(f"unknown technician {values['technician_id']!r}")
    for enum_field in ("priority", "status"):
        if enum_field in values:
            values[enum_field] = str(values[enum_field].value)
    # Arithmetic in UTC: adding a timedelta to a local time counts wall-clock time across DST.
    start = (change.start or appt.start).astimezone(UTC)
    if change.end is not None:
        end = change.end
    elif change.duration_minutes is not None:
        end = start + timedelta(minutes=change.duration_minutes)
    else:
        end = start + (appt.end - appt.start)  # a reschedule keeps the job's length
    if end <= start:
        raise InvalidChange(
            f"appointment {appointment_id}: end {end.isoformat()} is not "
            f"after start {start.isoformat()}"
        )
    values.update(start=start, end=end, duration_minutes=int((end - start).total_seconds() // 60))
    return _set(appt, values)


def apply_status(
    session: Session,
    appointment_id: str,
    status: AppointmentStatus,
    *,
    at: datetime | None = None,
    eta: datetime | None = None,
    note: str = "",
) -> bool:
    """Technician status: completed (early or late), delayed with a new ETA, canceled.

    A delay before the job starts moves the whole job to the ETA (arrival). A delay while it
    is in progress moves only its end (the ETA is when it will be done).
    """
    appt = _load(session, appointment_id)
    values: dict[str, Any] = {"status": status.value}
    if note:
        values["status_note"] = note
    if status is AppointmentStatus.DELAYED:
        if eta is None:
            raise InvalidChange("a delay needs a new ETA")
        if eta.tzinfo is None:
            raise InvalidChange("the ETA must carry a UTC offset")
        if appt.status == AppointmentStatus.IN_PROGRESS:
            if eta <= appt.start:
                raise InvalidChange(f"ETA {eta.isoformat()} is before the job started")
            values["end"] = eta
            values["status"] = AppointmentStatus.IN_PROGRESS.value
            values["status_note"] = note or f"running late, done by {eta.isoformat()}"
        else:
            length = appt.end - appt.start  # both UTC from the store: a true duration
            eta = eta.astimezone(UTC)
            values.update(start=eta, end=eta + length)
            values["status_note"] = note or f"delayed, arriving {eta.isoformat()}"
    elif status is AppointmentStatus.COMPLETED:
        if at is not None:
            if at.tzinfo is None:
                raise InvalidChange("the completion time must carry a UTC offset")
            if at > appt.start:
                values["end"] = at  # finished early or late: the calendar shows what happened
    elif status not in OPEN_STATUSES and status is not AppointmentStatus.CANCELED:
        raise InvalidChange(f"unsupported technician status {status.value!r}")
    if "end" in values:
        start = values.get("start", appt.start)
        values["duration_minutes"] = int((values["end"] - start).total_seconds() // 60)
    return _set(appt, values)
