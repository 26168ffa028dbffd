"""Join jobs with their technician, job type, materials and travel from the previous job."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from fieldsync.domain import EnrichedJob, JobTypeView, JobView, MaterialLine, TechnicianView
from fieldsync.travel import TravelModel


def enrich(
    jobs: Sequence[JobView],
    technicians: Mapping[str, TechnicianView],
    job_types: Mapping[str, JobTypeView],
    catalog: Mapping[str, tuple[str, float | None]],
    travel: TravelModel,
) -> list[EnrichedJob]:
    travel_minutes = travel_from_previous(jobs, technicians, travel)
    # A shift repeats the same few material lines thousands of times: name each one once.
    named: dict[MaterialLine, MaterialLine] = {}
    enriched: list[EnrichedJob] = []
    for job in jobs:
        if any(not m.name for m in job.materials):
            lines = []
            for m in job.materials:
                if m not in named:
                    named[m] = m if m.name else replace(m, name=catalog.get(m.sku, (m.sku,))[0])
                lines.append(named[m])
            job = replace(job, materials=tuple(lines))
        missing = tuple(
            m.sku
            for m in job.materials
            if (stock := catalog.get(m.sku, ("", None))[1]) is not None and stock < m.quantity
        )
        enriched.append(
            EnrichedJob(
                job=job,
                technician=technicians.get(job.technician_id) if job.technician_id else None,
                job_type=job_types.get(job.job_type),
                travel_minutes_from_previous=travel_minutes.get(job.id),
                missing_materials=missing,
            )
        )
    return enriched


def travel_from_previous(
    jobs: Sequence[JobView], technicians: Mapping[str, TechnicianView], travel: TravelModel
) -> dict[str, float]:
    """Minutes from the technician's previous open job the same day (or from home base)."""
    by_tech: dict[str, list[JobView]] = defaultdict(list)
    for job in jobs:
        if job.technician_id is not None and job.technician_id in technicians and job.is_open:
            by_tech[job.technician_id].append(job)
    out: dict[str, float] = {}
    for tech_id, day in by_tech.items():
        tech = technicians[tech_id]
        day.sort(key=lambda j: j.start)
        prev: JobView | None = None
        for cur in day:
            if prev is not None and prev.start.date() == cur.start.date():
                origin = _point(prev.lat, prev.lon)
            else:
                origin = _point(tech.home_lat, tech.home_lon)
            out[cur.id] = travel.minutes(origin, _point(cur.lat, cur.lon))
            prev = cur
    return out


def _point(lat: float | None, lon: float | None) -> tuple[float, float] | None:
    return None if lat is None or lon is None else (lat, lon)
