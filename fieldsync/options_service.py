"""Rescheduling options for one appointment, from the store: the glue between the options
engine (`fieldsync.rescheduling`) and the flow, CLI and API that expose it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import BusyBlock
from fieldsync.conflicts import ConflictFinding
from fieldsync.domain import AppointmentStatus, JobView
from fieldsync.rescheduling import (
    Option,
    options_for_cancellation,
    options_for_conflict,
    options_for_delay,
    options_for_emergency,
)
from fieldsync.store import reads
from fieldsync.store.tables import Appointment, Conflict

Situation = Literal["emergency", "cancellation", "delay", "conflict"]


class NoOptions(LookupError):
    pass


def options_for(
    session: Session,
    appointment_id: str,
    situation: Situation,
    *,
    now: datetime,
    new_eta: datetime | None = None,
    busy: Mapping[str, Sequence[BusyBlock]] | None = None,
    limit: int = 5,
) -> tuple[list[Option], list[str]]:
    """Ranked options, plus notes for the dispatcher (the knock-on of a delay, the freed slot of
    a cancellation). Every active technician's day around the job is considered."""
    [job] = reads.jobs_by_ids(session, [appointment_id])
    technicians = reads.select_technicians(session)
    days = {job.start.date() + timedelta(days=d) for d in (-1, 0, 1)}  # zones differ by < 1 day
    jobs: dict[str, JobView] = {}
    for tech in technicians:
        for day in days:
            for j in reads.technician_day_jobs(session, tech, day):
                jobs[j.id] = j
    jobs[job.id] = job
    common = {
        "technicians": technicians,
        "jobs": list(jobs.values()),
        "job_types": reads.job_types(session),
        "now": now,
        "busy": busy,
        "limit": limit,
    }
    notes: list[str] = []
    if situation == "emergency":
        return options_for_emergency(job, **common), notes  # type: ignore[arg-type]
    if situation == "cancellation":
        waiting = _waiting(session, job)
        result = options_for_cancellation(job, waiting, **common)  # type: ignore[arg-type]
        if result.freed is not None:
            notes.append(
                f"Freed: {result.freed.technician_id} {result.freed.start:%H:%M}-"
                f"{result.freed.end:%H:%M} ({result.freed.minutes:.0f} min)"
            )
        return result.options, notes
    if situation == "delay":
        if new_eta is None:
            raise NoOptions("a delay needs the new ETA (new_eta)")
        delay = options_for_delay(job, new_eta, **common)  # type: ignore[arg-type]
        notes += [
            f"{late.job_id} starts {late.minutes_late:.0f} min late ({late.new_start:%H:%M})"
            + (" - past the end of the shift" if late.past_shift_end else "")
            for late in delay.knock_on
        ]
        return delay.options, notes
    finding = _open_conflict(session, appointment_id)
    return options_for_conflict(finding, **common), notes  # type: ignore[arg-type]


def _waiting(session: Session, job: JobView) -> list[JobView]:
    """Unassigned open jobs of the same day: the ones a freed slot could take."""
    stmt = (
        select(Appointment.id)
        .where(Appointment.technician_id.is_(None))
        .where(Appointment.status.in_([AppointmentStatus.BOOKED.value]))
        .where(Appointment.start >= job.start - timedelta(days=1))
        .where(Appointment.start < job.start + timedelta(days=1))
    )
    return reads.jobs_by_ids(session, list(session.scalars(stmt)))


def _open_conflict(session: Session, appointment_id: str) -> ConflictFinding:
    for row in session.scalars(
        select(Conflict).where(Conflict.resolved_at.is_(None)).order_by(Conflict.id.desc())
    ):
        if appointment_id in row.appointment_ids and row.severity == "critical":
            return ConflictFinding(
                row.technician_id, row.kind, "critical", tuple(row.appointment_ids), row.detail
            )
    raise NoOptions(f"appointment {appointment_id} is in no open critical conflict")


def describe(option: Option) -> dict[str, str]:
    """One table row for an option: what a dispatcher reads in the UI or the terminal."""
    moves = "; ".join(f"{m.job_id} {m.old_start:%H:%M}->{m.new_start:%H:%M}" for m in option.moves)
    return {
        "rank": str(option.rank),
        "technician": option.technician_id,
        "job": option.job_id,
        "start": f"{option.start:%Y-%m-%d %H:%M %Z}",
        "travel": f"{option.travel_minutes:.0f} min",
        "also moves": moves or "nothing",
        "why": option.reason,
    }


def option_lines_for_conflicts(
    session: Session, findings: Sequence[ConflictFinding], *, now: datetime, limit: int = 3
) -> dict[str, tuple[str, ...]]:
    """Short option lines for each critical overlap, for the alert that reports it."""
    wanted = [f for f in findings if f.severity == "critical" and f.kind == "overlap"]
    if not wanted:
        return {}
    technicians = reads.select_technicians(session)
    first = reads.jobs_by_ids(session, [wanted[0].appointment_ids[0]])[0]
    jobs: dict[str, JobView] = {}
    days = {first.start.date() + timedelta(days=d) for d in (-1, 0, 1)}
    for f in wanted:
        for j in reads.jobs_by_ids(session, list(f.appointment_ids)):
            days.add(j.start.date())
    for tech in technicians:
        for day in days:
            for j in reads.technician_day_jobs(session, tech, day):
                jobs[j.id] = j
    job_types = reads.job_types(session)
    zones = {t.id: t.timezone for t in technicians}
    out: dict[str, tuple[str, ...]] = {}
    for f in wanted:
        # Plan from the conflict's own day: options are about that day, which may be ahead.
        starts = [jobs[i].start for i in f.appointment_ids if i in jobs]
        zone = zones.get(f.technician_id, "UTC")
        day_begins = reads.local_day(reads.local_day_of_zone(min(starts), zone), zone)[0]
        options = options_for_conflict(
            f, technicians=technicians, jobs=list(jobs.values()), job_types=job_types,
            now=max(now, day_begins), limit=limit,
        )  # fmt: skip
        out[f.fingerprint] = tuple(
            f"{o.job_id} to {o.technician_id} at {o.start:%H:%M %Z}"
            + (f", moving {len(o.moves)} other job(s)" if o.moves else "")
            for o in options
        )
    return out
