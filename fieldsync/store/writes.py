"""Upserts from validated inputs: shared by file imports and webhook intake.

Each upsert writes only what differs, so feeding the same data twice is a no-op: no version
bump, no `updated_at` churn, and therefore no calendar writes downstream. None of them commits;
the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fieldsync.inputs import (
    AppointmentInput,
    JobTypeInput,
    MaterialInput,
    TechnicianInput,
    show,
)
from fieldsync.store.tables import Appointment, CalendarBinding, JobType, Material, Technician

Outcome = Literal["created", "updated", "unchanged"]


class WriteError(ValueError):
    """Input that is valid on its own but does not fit what the store already holds."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownTechnicianError(WriteError):
    def __init__(self, technician_id: str) -> None:
        super().__init__(
            "technician_id",
            f"{show(technician_id)} is not a known technician (import technicians first)",
        )
        self.technician_id = technician_id


class AppointmentIdConflictError(WriteError):
    pass


def assign_changed(row: Any, values: dict[str, Any]) -> bool:
    """Set only the attributes that differ; True if any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _technician_values(data: TechnicianInput) -> dict[str, Any]:
    return {
        "name": data.name,
        "email": data.email,
        "phone": data.phone,
        "timezone": data.timezone,
        "shift_start": data.shift_start,
        "shift_end": data.shift_end,
        "work_days": list(data.work_days),
        "skills": list(data.skills),
        "region": data.region,
        "home_lat": data.home_lat,
        "home_lon": data.home_lon,
        "service_lat": data.service_lat,
        "service_lon": data.service_lon,
        "service_radius_km": data.service_radius_km,
    }


def _sync_bindings(technician: Technician, data: TechnicianInput) -> bool:
    """Bring the bindings in line with the input without deleting any.

    The sync ledger points at binding ids, so a binding that disappears from the input is
    switched off rather than deleted, and one that stays keeps its id (and its ledger rows).
    """
    changed = False
    existing = {(b.platform, b.calendar_id): b for b in technician.bindings}
    wanted: set[tuple[str, str]] = set()
    for item in data.calendars:
        key = (item.platform, item.calendar_id)
        wanted.add(key)
        binding = existing.get(key)
        if binding is None:
            technician.bindings.append(
                CalendarBinding(
                    platform=item.platform,
                    calendar_id=item.calendar_id,
                    credentials_block=item.credentials_block,
                    active=True,
                )
            )
            changed = True
        else:
            changed |= assign_changed(
                binding, {"credentials_block": item.credentials_block, "active": True}
            )
    for key, binding in existing.items():
        if key not in wanted and binding.active:
            binding.active = False
            changed = True
    return changed


def upsert_technician(session: Session, data: TechnicianInput) -> bool:
    """Create or update a technician and its calendar bindings; True if anything changed.

    `active` is left alone on existing technicians: deactivation is a decision made elsewhere,
    and a routine re-import must not undo it.
    """
    technician = session.get(Technician, data.id)
    if technician is None:
        technician = Technician(id=data.id, active=True, **_technician_values(data))
        session.add(technician)
        _sync_bindings(technician, data)
        return True
    changed = assign_changed(technician, _technician_values(data))
    changed |= _sync_bindings(technician, data)
    return changed


def upsert_material(session: Session, data: MaterialInput) -> bool:
    """Create or update a material by SKU; True if anything changed."""
    values = {"name": data.name, "unit": data.unit, "in_stock": data.in_stock}
    material = session.get(Material, data.sku)
    if material is None:
        session.add(Material(sku=data.sku, **values))
        return True
    return assign_changed(material, values)


def upsert_job_type(session: Session, data: JobTypeInput) -> bool:
    """Create or update a job type by name; True if anything changed."""
    values = {
        "required_skills": list(data.required_skills),
        "setup_minutes": data.setup_minutes,
        "default_duration_minutes": data.default_duration_minutes,
    }
    job_type = session.get(JobType, data.name)
    if job_type is None:
        session.add(JobType(name=data.name, **values))
        return True
    return assign_changed(job_type, values)


def _appointment_values(data: AppointmentInput) -> dict[str, Any]:
    return {
        "technician_id": data.technician_id,
        "status": data.status.value,
        "priority": data.priority.value,
        "job_type": data.job_type,
        "start": data.start,
        "end": data.resolved_end,
        "duration_minutes": data.resolved_duration,
        "customer_name": data.customer_name,
        "customer_phone": data.customer_phone,
        "customer_email": data.customer_email,
        "address": data.address,
        "lat": data.lat,
        "lon": data.lon,
        "materials": data.material_payload(),
        "notes": data.notes,
    }


def upsert_appointment(session: Session, data: AppointmentInput) -> tuple[Appointment, Outcome]:
    """Create or update the appointment for (source, source_id).

    `version` goes up by one only when the content changed: connectors compare it with what
    they last pushed, so a spurious bump would rewrite every calendar for nothing.
    Raises UnknownTechnicianError / AppointmentIdConflictError (both ValueError).
    """
    if data.technician_id is not None and session.get(Technician, data.technician_id) is None:
        raise UnknownTechnicianError(data.technician_id)
    appointment = session.scalars(
        select(Appointment).where(
            Appointment.source == data.source, Appointment.source_id == data.source_id
        )
    ).one_or_none()
    values = _appointment_values(data)

    if appointment is None:
        job_id = data.resolved_id
        taken = session.get(Appointment, job_id)
        if taken is not None:
            raise AppointmentIdConflictError(
                "id",
                f"{show(job_id)} already belongs to the job from "
                f"{taken.source} {show(taken.source_id)}",
            )
        appointment = Appointment(
            id=job_id, source=data.source, source_id=data.source_id, version=1, **values
        )
        session.add(appointment)
        return appointment, "created"

    # The id is the key the sync ledger and the calendars know the job by; it cannot move.
    if data.id is not None and data.id != appointment.id:
        raise AppointmentIdConflictError(
            "id",
            f"{show(data.id)} does not match {show(appointment.id)}, the id already stored "
            f"for {data.source} {show(data.source_id)}",
        )
    if not assign_changed(appointment, values):
        return appointment, "unchanged"
    appointment.version += 1
    return appointment, "updated"
