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
    enriched: list[EnrichedJob] = []
    for job in jobs:
        named = tuple(
            MaterialLine(m.sku, m.quantity, m.name or catalog.get(m.sku, (m.sku, None))[0])
            for m in job.materials
        )
        missing = tuple(
            m.sku
            for m in job.materials
            if (stock := catalog.get(m.sku, ("", None))[1]) is not None and stock < m.quantity
        )
        enriched.append(
            EnrichedJob(
                job=replace(job, materials=named),
                technician=technicians.get(job.technician_id) if job.technician_id else None,
                job_type=job_types.get(job.job_type),
                missing_materials=missing,
            )
        )
    return with_travel(enriched, travel)


def with_travel(jobs: Sequence[EnrichedJob], travel: TravelModel) -> list[EnrichedJob]:
    """Travel minutes from the technician's previous open job (or home base) the same day."""
    by_tech: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(jobs):
        if e.technician is not None and e.job.is_open:
            by_tech[e.technician.id].append(i)
    out = list(jobs)
    for indexes in by_tech.values():
        indexes.sort(key=lambda i: jobs[i].job.start)
        prev: EnrichedJob | None = None
        for i in indexes:
            cur = jobs[i]
            tech = cur.technician
            assert tech is not None
            if prev is not None and prev.job.start.date() == cur.job.start.date():
                origin = _point(prev.job.lat, prev.job.lon)
            else:
                origin = _point(tech.home_lat, tech.home_lon)
            out[i] = replace(
                cur,
                travel_minutes_from_previous=travel.minutes(
                    origin, _point(cur.job.lat, cur.job.lon)
                ),
            )
            prev = cur
    return out


def _point(lat: float | None, lon: float | None) -> tuple[float, float] | None:
    return None if lat is None or lon is None else (lat, lon)
