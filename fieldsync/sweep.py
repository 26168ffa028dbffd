"""Which jobs a conflict sweep looks at: whole local days, so every check sees its neighbours."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from fieldsync.domain import TechnicianView
from fieldsync.parameters import check_aware, check_days_ahead
from fieldsync.store import reads


def sweep_days(technician: TechnicianView, days_ahead: int, now: datetime) -> list[date]:
    """The technician's own today and the following days, `days_ahead` local days in all."""
    today = now.astimezone(ZoneInfo(technician.timezone)).date()
    return [today + timedelta(days=k) for k in range(days_ahead)]


def sweep_job_ids(
    session: Session, *, days_ahead: int, now: datetime, region: str | None = None
) -> list[str]:
    check_days_ahead(days_ahead)
    check_aware("as_of", now)
    technicians = reads.select_technicians(session, region=region)
    if region is not None and not technicians:
        # A mistyped region in a schedule would otherwise sweep nothing, quietly, forever.
        raise reads.NotFoundInStore(f"no active technician in region {region!r}")
    by_day: dict[date, list[TechnicianView]] = defaultdict(list)
    for t in technicians:
        for day in sweep_days(t, days_ahead, now):
            by_day[day].append(t)
    ids: list[str] = []
    seen: set[str] = set()
    for day, techs in sorted(by_day.items()):
        for job_id in reads.day_job_ids(session, techs, day):
            if job_id not in seen:
                seen.add(job_id)
                ids.append(job_id)
    return ids
