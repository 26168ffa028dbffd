"""A synthetic shift: N technicians with M jobs each, every technician bound to ICS + memory."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from fieldsync.store.db import get_engine, migrate
from fieldsync.store.tables import Appointment, CalendarBinding, JobType, Technician, utcnow

DAY = datetime(2026, 12, 1, tzinfo=ZoneInfo("America/Chicago"))
ZONES = ["America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles"]


def build(
    url: str,
    technicians: int,
    jobs_each: int,
    platforms: tuple[str, ...],
    *,
    calendar_for: Callable[[str, str], str] = lambda tech, platform: f"{tech}-{platform}",
    blocks: Mapping[str, str] | None = None,
) -> int:
    """Returns the number of appointments. `blocks` maps a platform to the credentials block
    its bindings name; `calendar_for(technician, platform)` gives each calendar id."""
    migrate(url)
    rng = random.Random(7)
    now = utcnow()
    techs, bindings, appts = [], [], []
    binding_id = 0
    for t in range(technicians):
        tid = f"T{t:05d}"
        zone = ZONES[t % len(ZONES)]
        lat, lon = 32.5 + rng.random(), -97.5 + rng.random()
        techs.append(
            {
                "id": tid,
                "name": f"Technician {t}",
                "email": "",
                "phone": "",
                "timezone": zone,
                "shift_start": time(6),
                "shift_end": time(20),
                "work_days": [0, 1, 2, 3, 4],
                "skills": ["hvac"],
                "region": f"r{t % 10}",
                "home_lat": lat,
                "home_lon": lon,
                "service_lat": lat,
                "service_lon": lon,
                "service_radius_km": 40.0,
                "active": True,
                "updated_at": now,
            }
        )
        for p in platforms:
            binding_id += 1
            bindings.append(
                {
                    "id": binding_id,
                    "technician_id": tid,
                    "platform": p,
                    "calendar_id": calendar_for(tid, p),
                    "credentials_block": (blocks or {}).get(p),
                    "active": True,
                }
            )
        day = DAY.replace(tzinfo=ZoneInfo(zone))
        clock = day.replace(hour=6)
        for j in range(jobs_each):
            length = rng.choice([20, 25, 30])
            start = clock
            end = start + timedelta(minutes=length)
            clock = end + timedelta(minutes=rng.choice([10, 15, 20]))
            appts.append(
                {
                    "id": f"J{t:05d}{j:03d}",
                    "source": "crm",
                    "source_id": f"C{t:05d}{j:03d}",
                    "technician_id": tid,
                    "status": "scheduled",
                    "priority": "normal",
                    "job_type": "AC repair",
                    "start": start,
                    "end": end,
                    "duration_minutes": length,
                    "customer_name": f"Customer {t}-{j}",
                    "customer_phone": "+1 214 555 0100",
                    "customer_email": "",
                    "address": f"{100 + j} Main St",
                    "lat": lat + rng.random() / 100,
                    "lon": lon + rng.random() / 100,
                    "materials": [{"sku": "CAP-45-5", "quantity": 1}],
                    "notes": "Gate code 1234",
                    "status_note": "",
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(JobType),
            [
                {
                    "name": "AC repair",
                    "required_skills": ["hvac"],
                    "setup_minutes": 5,
                    "default_duration_minutes": 30,
                }
            ],
        )
        conn.execute(insert(Technician), techs)
        conn.execute(insert(CalendarBinding), bindings)
        conn.execute(insert(Appointment), appts)
    return len(appts)
