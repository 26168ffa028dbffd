"""The full conflict engine: everything that can make a technician's booked day unworkable.

`ConflictEngine` plugs in behind the `ConflictDetector` seam of `fieldsync.conflicts`. It
extends `OverlapTravelDetector`, whose sweep it reuses unchanged for overlaps and travel
squeezes (so those findings, and their fingerprints, are the same whichever detector a flow
runs), and adds, per technician's day:

    kind        severity   what
    overlap     critical   two open jobs of one technician overlap (the inherited sweep)
    travel      warning    the gap cannot cover the drive plus the next job's setup (ditto)
    shift       warning    a job outside the shift, or on a non-working day, read in the
                           technician's own time zone (DST and overnight shifts included)
    skill       critical   the technician lacks a skill the job type requires
    materials   warning    a material whose stock is tracked is short (`missing_materials`)
    busy        critical   a job overlaps busy time on the technician's own calendar that is
                           not one of our events

Only open jobs with a known technician are checked. Times are compared as instants; the shift
window is computed once per technician-day in UTC rather than converting every job, which is
what keeps 100,000 jobs within half a second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import attrgetter, eq
from zoneinfo import ZoneInfo

from connectors.base import BusyBlock
from fieldsync.conflicts import ConflictFinding, OverlapTravelDetector, Severity
from fieldsync.domain import OPEN_STATUSES, EnrichedJob, TechnicianView

__all__ = ["SEVERITY", "ConflictEngine"]

SEVERITY: Mapping[str, Severity] = {
    "overlap": "critical",
    "travel": "warning",
    "shift": "warning",
    # Without the skill the job cannot be done as booked: it goes out tentative until a
    # dispatcher reassigns it, like a double-booking.
    "skill": "critical",
    "materials": "warning",
    # The technician's own appointment (doctor, school run) is a double-booking too.
    "busy": "critical",
}

_DAY = timedelta(days=1)
# Same order as OverlapTravelDetector.detect, so the reused sweep pairs jobs the same way.
_SWEEP_ORDER = attrgetter("job.start", "job.id")
_START = attrgetter("job.start")
_BY_START = attrgetter("start")


@dataclass(frozen=True, slots=True)
class _ShiftDay:
    """One local calendar day of a technician, as UTC instants.

    `windows` holds the shift windows a job starting on this day may lie in: the day's own
    shift, and for an overnight shift the one that began the evening before. Shifts of
    non-working days are left out, so an empty tuple means no job may start on this day."""

    day: date
    end: datetime  # the next local midnight
    windows: tuple[tuple[datetime, datetime], ...]
    working: bool


# Ends before every real job, so the first job of each technician always loads its day.
_NO_DAY = _ShiftDay(date.min, datetime.min.replace(tzinfo=UTC), (), False)


def _instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A local wall-clock time as a UTC instant, read the way calendars read it (RFC 5545
    3.3.5), which is also Python's fold=0: a time the clocks repeat is its first occurrence,
    and a time they skip takes the offset from before the gap (02:30 on spring-forward night
    in New York is 03:30 EDT)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _window(day: date, start: time, end: time, zone: ZoneInfo) -> tuple[datetime, datetime]:
    # end <= start is an overnight shift (22:00-06:00, or 07:00-00:00 "until midnight"); equal
    # times are read as a full 24 hours, not as an empty shift.
    end_day = day if end > start else day + _DAY
    return _instant(day, start, zone), _instant(end_day, end, zone)


@lru_cache(maxsize=65_536)
def _shift_day(
    timezone: str, shift_start: time, shift_end: time, work_days: tuple[int, ...], day: date
) -> _ShiftDay:
    """Cached across technicians: most share a zone and shift hours, so a 2,000-technician week
    needs only a few dozen zoneinfo computations."""
    zone = ZoneInfo(timezone)
    # Shifts of consecutive working days that touch (a 24-hour shift) are one stretch of work:
    # a job across the hand-over is inside it.
    runs: list[tuple[datetime, datetime]] = []
    for d in (day - _DAY, day, day + _DAY):
        if d.weekday() in work_days:
            w_start, w_end = _window(d, shift_start, shift_end, zone)
            if runs and w_start <= runs[-1][1]:
                runs[-1] = (runs[-1][0], max(runs[-1][1], w_end))
            else:
                runs.append((w_start, w_end))
    # Where a zone skips midnight, fold=0 lands on the first instant the day has.
    midnight, next_midnight = _instant(day, time(0), zone), _instant(day + _DAY, time(0), zone)
    windows = tuple((a, b) for a, b in runs if a < next_midnight and b > midnight)
    return _ShiftDay(day, next_midnight, windows, day.weekday() in work_days)


def _hm(t: time) -> str:
    return f"{t:%H:%M}"


def _local_span(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """'Mon 2026-03-09 06:30-07:30' in the technician's zone; a span past local midnight says so."""
    s, e = start.astimezone(zone), end.astimezone(zone)
    days = (e.date() - s.date()).days
    more = f" (+{days} day{'s' if days > 1 else ''})" if days else ""
    return f"{s:%a %Y-%m-%d %H:%M}-{e:%H:%M}{more}"


@dataclass(frozen=True)
class ConflictEngine(OverlapTravelDetector):
    """Drop-in `ConflictDetector`: `ConflictEngine(GreatCircleTravel(speed_kmh=50,
    detour_factor=1.4), busy={"T1": blocks})`. `travel` and `tolerance_minutes` are the
    inherited overlap/travel settings; `busy` maps technician ids to the busy time read from
    their own calendars (blocks carrying a job_id are our own events and are ignored)."""

    busy: Mapping[str, Sequence[BusyBlock]] = field(default_factory=dict, kw_only=True)

    def detect(self, jobs: Sequence[EnrichedJob]) -> list[ConflictFinding]:
        by_tech: defaultdict[str, list[EnrichedJob]] = defaultdict(list)
        for e in jobs:
            tech = e.technician
            # is_open inlined: a property call per job is measurable at 100,000 jobs.
            if tech is not None and e.job.status in OPEN_STATUSES:
                by_tech[tech.id].append(e)
        findings: list[ConflictFinding] = []
        for tech_id, day in by_tech.items():
            # The sweep's order is (start, id). Sorting on start alone and re-sorting only a
            # day with tied starts gives the same order for a third less time than building a
            # tuple key for every job.
            day.sort(key=_START)
            starts = [e.job.start for e in day]
            if any(map(eq, starts, starts[1:])):
                day.sort(key=_SWEEP_ORDER)
            tech = day[0].technician
            assert tech is not None
            findings.extend(self._sweep(tech_id, day))
            findings.extend(_per_job(tech, day))
            blocks = self.busy.get(tech_id)
            if blocks:
                findings.extend(_busy(tech, day, blocks))
        return findings


def _per_job(tech: TechnicianView, day: list[EnrichedJob]) -> list[ConflictFinding]:
    """Shift, skill and materials in one pass over the technician's jobs, sorted by start."""
    out: list[ConflictFinding] = []
    tz, s_start, s_end, skills = tech.timezone, tech.shift_start, tech.shift_end, tech.skills
    work_days = tuple(tech.work_days)  # the day cache needs it hashable, whatever was passed
    zone = ZoneInfo(tz)
    plan = _NO_DAY
    day_end = plan.end
    for e in day:
        job = e.job
        start = job.start
        if start >= day_end:
            # A new local day: one zone conversion here instead of one per job.
            plan = _shift_day(tz, s_start, s_end, work_days, start.astimezone(zone).date())
            day_end = plan.end
        end = job.end
        for w_start, w_end in plan.windows:
            if w_start <= start and end <= w_end:
                break
        else:
            if plan.working:
                why = f"is outside the {_hm(s_start)}-{_hm(s_end)} shift"
            else:
                why = f"falls on a non-working day ({plan.day:%A})"
            out.append(
                ConflictFinding(
                    tech.id,
                    "shift",
                    SEVERITY["shift"],
                    (job.id,),
                    f"{job.id} ({_local_span(start, end, zone)}) {why} in {tz}",
                )
            )
        jt = e.job_type
        if jt is not None and not jt.required_skills <= skills:
            lacking = ", ".join(sorted(jt.required_skills - skills))
            out.append(
                ConflictFinding(
                    tech.id,
                    "skill",
                    SEVERITY["skill"],
                    (job.id,),
                    f"{job.id} ({jt.name}) needs {lacking}, which {tech.name} lacks",
                )
            )
        if e.missing_materials:
            # enrich() lists only materials whose stock is tracked, so untracked ones never
            # reach this point.
            out.append(
                ConflictFinding(
                    tech.id,
                    "materials",
                    SEVERITY["materials"],
                    (job.id,),
                    f"{job.id} needs materials out of stock: {', '.join(e.missing_materials)}",
                )
            )
    return out


def _busy(
    tech: TechnicianView, day: list[EnrichedJob], blocks: Sequence[BusyBlock]
) -> list[ConflictFinding]:
    """Jobs (sorted by start) against the calendar's external busy blocks, in one sweep."""
    external = sorted((b for b in blocks if b.job_id is None), key=_BY_START)
    if not external:
        return []
    zone = ZoneInfo(tech.timezone)
    out: list[ConflictFinding] = []
    active: list[BusyBlock] = []  # blocks already started that might still reach a job
    i, n = 0, len(external)
    for e in day:
        job = e.job
        start, end = job.start, job.end
        # Later jobs start later, so a block ended by this job's start is done for good.
        if active:
            active = [b for b in active if b.end > start]
        while i < n and external[i].start < end:
            if external[i].end > start:
                active.append(external[i])
            i += 1
        for b in active:
            # A block pulled in by a longer earlier job may begin after this one ends.
            if b.start < end:
                out.append(
                    ConflictFinding(
                        tech.id,
                        "busy",
                        SEVERITY["busy"],
                        (job.id,),
                        f"{job.id} ({_local_span(start, end, zone)}) overlaps busy time "
                        f"{_local_span(b.start, b.end, zone)} on {tech.name}'s calendar",
                    )
                )
    return out
