"""Which jobs a shift-start sync reconciles."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from fieldsync.domain import TechnicianView
from fieldsync.store import reads


def shift_job_ids(
    session: Session,
    shift_date: date | None,
    *,
    region: str | None = None,
    technician_id: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """All jobs of the selected technicians on the shift date, each in the technician's own
    time zone. Without a date, each technician's own today (a 06:00 run in Chicago and one in
    Sydney both mean *their* today)."""
    technicians = reads.select_technicians(session, region=region, technician_id=technician_id)
    by_day: dict[date, list[TechnicianView]] = defaultdict(list)
    now = now or datetime.now(UTC)
    for t in technicians:
        day = shift_date or now.astimezone(ZoneInfo(t.timezone)).date()
        by_day[day].append(t)
    ids: list[str] = []
    for day, techs in sorted(by_day.items()):
        ids.extend(reads.day_job_ids(session, techs, day))
    return ids
