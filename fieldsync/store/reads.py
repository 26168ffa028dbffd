"""Read the store into the plain views that flows pass between tasks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fieldsync.domain import (
    AppointmentStatus,
    BindingView,
    JobTypeView,
    JobView,
    LedgerState,
    MaterialLine,
    Priority,
    TechnicianView,
)
from fieldsync.store.tables import (
    Appointment,
    CalendarBinding,
    JobType,
    Material,
    SyncLedger,
    Technician,
)
from fieldsync.sync.ledger_store import chunks


class NotFoundInStore(LookupError):
    pass


def technician_view(t: Technician) -> TechnicianView:
    return TechnicianView(
        id=t.id,
        name=t.name,
        timezone=t.timezone,
        shift_start=t.shift_start,
        shift_end=t.shift_end,
        work_days=tuple(t.work_days or ()),
        skills=frozenset(t.skills or ()),
        home_lat=t.home_lat,
        home_lon=t.home_lon,
        region=t.region,
        email=t.email,
        phone=t.phone,
        service_lat=t.service_lat,
        service_lon=t.service_lon,
        service_radius_km=t.service_radius_km,
        bindings=tuple(
            BindingView(b.id, b.technician_id, b.platform, b.calendar_id, b.credentials_block)
            for b in sorted(t.bindings, key=lambda b: b.id)
            if b.active
        ),
    )


def job_view(a: Any) -> JobView:
    """From an Appointment, or a Core row of the appointments table (same attribute names)."""
    return JobView(
        id=a.id,
        source=a.source,
        source_id=a.source_id,
        technician_id=a.technician_id,
        status=AppointmentStatus(a.status),
        priority=Priority(a.priority),
        job_type=a.job_type,
        start=a.start,
        end=a.end,
        customer_name=a.customer_name,
        customer_phone=a.customer_phone,
        customer_email=a.customer_email,
        address=a.address,
        lat=a.lat,
        lon=a.lon,
        notes=a.notes,
        version=a.version,
        materials=tuple(
            MaterialLine(str(m["sku"]), float(m.get("quantity", 1)), str(m.get("name", "")))
            for m in (a.materials or [])
        ),
        status_note=a.status_note,
    )


def jobs_by_ids(session: Session, ids: Sequence[str]) -> list[JobView]:
    found: dict[str, JobView] = {}
    table = Appointment.__table__
    for part in chunks(list(ids)):
        # Core rows, not ORM objects: several times faster for a 10,000-job shift.
        for a in session.execute(select(table).where(table.c.id.in_(part))):
            found[a.id] = job_view(a)
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundInStore(f"no appointment with id {', '.join(missing[:10])}")
    return [found[i] for i in ids]


def technicians_by_ids(session: Session, ids: Iterable[str]) -> dict[str, TechnicianView]:
    out: dict[str, TechnicianView] = {}
    for part in chunks(sorted(set(ids))):
        for t in session.scalars(select(Technician).where(Technician.id.in_(part))):
            out[t.id] = technician_view(t)
    return out


def select_technicians(
    session: Session, *, region: str | None = None, technician_id: str | None = None
) -> list[TechnicianView]:
    stmt = select(Technician).where(Technician.active.is_(True)).order_by(Technician.id)
    if region:
        stmt = stmt.where(Technician.region == region)
    if technician_id:
        stmt = stmt.where(Technician.id == technician_id)
    techs = [technician_view(t) for t in session.scalars(stmt)]
    if technician_id and not techs:
        raise NotFoundInStore(f"no active technician with id {technician_id}")
    return techs


def job_types(session: Session) -> dict[str, JobTypeView]:
    return {
        j.name: JobTypeView(
            j.name,
            frozenset(j.required_skills or ()),
            j.setup_minutes,
            j.default_duration_minutes,
        )
        for j in session.scalars(select(JobType))
    }


def material_catalog(session: Session) -> dict[str, tuple[str, float | None]]:
    return {m.sku: (m.name, m.in_stock) for m in session.scalars(select(Material))}


def local_day(day: date, tz: str) -> tuple[datetime, datetime]:
    """The UTC bounds of a calendar day where the technician lives (23 or 25 h on DST days)."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def day_job_ids(session: Session, technicians: Sequence[TechnicianView], day: date) -> list[str]:
    """Every appointment of these technicians on their local day, plus any whose events sit on
    their calendars although the job moved away (reassigned or unassigned), so one run
    reconciles the whole day."""
    if not technicians:
        return []
    windows = {t.id: local_day(day, t.timezone) for t in technicians}
    lo = min(w[0] for w in windows.values())
    hi = max(w[1] for w in windows.values())
    ids: list[str] = []
    seen: set[str] = set()
    tech_ids = list(windows)
    for part in chunks(tech_ids):
        stmt = (
            select(Appointment.id, Appointment.technician_id, Appointment.start)
            .where(Appointment.technician_id.in_(part))
            .where(Appointment.start >= lo, Appointment.start < hi)
            .order_by(Appointment.start, Appointment.id)
        )
        for appt_id, tech_id, start in session.execute(stmt).tuples():
            w = windows[str(tech_id)]
            if w[0] <= start < w[1] and appt_id not in seen:
                seen.add(appt_id)
                ids.append(appt_id)
        moved = (
            select(SyncLedger.appointment_id)
            .join(CalendarBinding, CalendarBinding.id == SyncLedger.binding_id)
            .join(Appointment, Appointment.id == SyncLedger.appointment_id)
            .where(CalendarBinding.technician_id.in_(part))
            .where(SyncLedger.state != LedgerState.DELETED)
            .where(Appointment.start >= lo, Appointment.start < hi)
            .where(
                or_(
                    Appointment.technician_id.is_(None),
                    and_(Appointment.technician_id != CalendarBinding.technician_id),
                )
            )
        )
        for (appt_id,) in session.execute(moved).tuples():
            if appt_id not in seen:
                seen.add(appt_id)
                ids.append(appt_id)
    return ids


def technician_day_jobs(session: Session, technician: TechnicianView, day: date) -> list[JobView]:
    lo, hi = local_day(day, technician.timezone)
    stmt = (
        select(Appointment)
        .where(Appointment.technician_id == technician.id)
        .where(Appointment.start < hi, Appointment.end > lo)
        .order_by(Appointment.start)
    )
    return [job_view(a) for a in session.scalars(stmt)]


def local_day_of(moment: datetime, technician: TechnicianView) -> date:
    return local_day_of_zone(moment, technician.timezone)


def local_day_of_zone(moment: datetime, tz: str) -> date:
    return moment.astimezone(ZoneInfo(tz)).date()


def ledger_technicians(session: Session, appointment_ids: Sequence[str]) -> dict[str, str]:
    """For each appointment, a technician whose calendar holds a live event of it."""
    out: dict[str, str] = {}
    for part in chunks(list(appointment_ids)):
        stmt = (
            select(SyncLedger.appointment_id, CalendarBinding.technician_id)
            .join(CalendarBinding, CalendarBinding.id == SyncLedger.binding_id)
            .where(SyncLedger.appointment_id.in_(part))
            .where(SyncLedger.state != LedgerState.DELETED)
        )
        for appt_id, tech_id in session.execute(stmt).tuples():
            out.setdefault(appt_id, tech_id)
    return out
