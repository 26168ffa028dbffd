"""Small builders for store rows, so tests say only what matters to them."""

from __future__ import annotations

import itertools
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from fieldsync.store.tables import Appointment, CalendarBinding, JobType, Technician

CHICAGO = ZoneInfo("America/Chicago")
DAY = datetime(2026, 12, 1, tzinfo=CHICAGO)  # a Tuesday
_seq = itertools.count(1)


def add_technician(
    session: Session,
    tech_id: str,
    *,
    platforms: tuple[str, ...] = ("memory",),
    region: str = "dfw",
    skills: tuple[str, ...] = ("hvac",),
    tz: str = "America/Chicago",
) -> Technician:
    tech = Technician(
        id=tech_id,
        name=f"Tech {tech_id}",
        timezone=tz,
        shift_start=time(7, 0),
        shift_end=time(17, 0),
        work_days=[0, 1, 2, 3, 4],
        skills=list(skills),
        region=region,
        home_lat=32.78,
        home_lon=-96.80,
    )
    tech.bindings = [CalendarBinding(platform=p, calendar_id=f"{tech_id}-{p}") for p in platforms]
    session.add(tech)
    session.flush()
    return tech


def add_job_type(session: Session, name: str = "AC repair", setup: int = 10) -> None:
    session.merge(
        JobType(
            name=name, required_skills=["hvac"], setup_minutes=setup, default_duration_minutes=60
        )
    )
    session.flush()


def add_appointment(
    session: Session,
    tech_id: str | None,
    *,
    hour: float = 8,
    minutes: int = 60,
    day: datetime = DAY,
    status: str = "booked",
    lat: float = 32.78,
    lon: float = -96.80,
    appt_id: str | None = None,
) -> Appointment:
    n = next(_seq)
    start = day + timedelta(hours=hour)
    appt = Appointment(
        id=appt_id or f"J-{n:05d}",
        source="portal",
        source_id=f"P-{n}",
        technician_id=tech_id,
        status=status,
        priority="normal",
        job_type="AC repair",
        start=start,
        end=start + timedelta(minutes=minutes),
        duration_minutes=minutes,
        customer_name=f"Customer {n}",
        customer_phone="+1 214 555 0100",
        address=f"{100 + n} Main St, Dallas, TX",
        lat=lat,
        lon=lon,
        materials=[{"sku": "CAP-45", "quantity": 1}],
        notes="Gate code 1234",
    )
    session.add(appt)
    session.flush()
    return appt
