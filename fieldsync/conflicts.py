"""Conflict detection: the seam every flow calls before pushing.

`ConflictDetector` is the interface; `OverlapTravelDetector` checks, per technician, jobs that
overlap and gaps too short to drive between sites (plus the next job type's setup buffer).
A fuller engine (shifts, skills, stock, external busy time) plugs in behind the same interface.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from fieldsync.domain import EnrichedJob
from fieldsync.travel import GreatCircleTravel, TravelModel

Severity = Literal["critical", "warning"]


@dataclass(frozen=True, slots=True)
class ConflictFinding:
    technician_id: str
    kind: str  # "overlap", "travel", ...
    severity: Severity
    appointment_ids: tuple[str, ...]
    detail: str

    @property
    def fingerprint(self) -> str:
        """Same problem, same fingerprint; a changed problem (new times) gets a new one."""
        blob = "|".join((self.kind, self.technician_id, *self.appointment_ids, self.detail))
        return hashlib.sha256(blob.encode()).hexdigest()


class ConflictDetector(Protocol):
    def detect(self, jobs: Sequence[EnrichedJob]) -> list[ConflictFinding]: ...


@dataclass(frozen=True)
class OverlapTravelDetector:
    travel: TravelModel = field(default_factory=GreatCircleTravel)
    # Below this many minutes of slack the travel is flagged; a tiny tolerance avoids noise
    # from rounding in the estimate.
    tolerance_minutes: float = 1.0

    def detect(self, jobs: Sequence[EnrichedJob]) -> list[ConflictFinding]:
        by_tech: dict[str, list[EnrichedJob]] = defaultdict(list)
        for e in jobs:
            if e.technician is not None and e.job.is_open:
                by_tech[e.technician.id].append(e)
        findings: list[ConflictFinding] = []
        for tech_id, day in by_tech.items():
            day.sort(key=lambda e: (e.job.start, e.job.id))
            findings.extend(self._sweep(tech_id, day))
        return findings

    def _sweep(self, tech_id: str, day: list[EnrichedJob]) -> list[ConflictFinding]:
        """Sorted by start, every overlap involves the job whose end reaches furthest so far,
        so one pass finds every overlapping pair without comparing all pairs."""
        out: list[ConflictFinding] = []
        active: list[EnrichedJob] = []  # jobs whose end lies beyond the current start
        prev: EnrichedJob | None = None
        for cur in day:
            active = [a for a in active if a.job.end > cur.job.start]
            for a in active:
                out.append(
                    ConflictFinding(
                        tech_id,
                        "overlap",
                        "critical",
                        (a.job.id, cur.job.id),
                        f"{a.job.id} ({_hm(a)}) overlaps {cur.job.id} ({_hm(cur)})",
                    )
                )
            if prev is not None and not active:
                gap = (cur.job.start - prev.job.end).total_seconds() / 60
                need = self.travel.minutes(_pt(prev), _pt(cur)) + (
                    cur.job_type.setup_minutes if cur.job_type else 0
                )
                if gap + self.tolerance_minutes < need:
                    out.append(
                        ConflictFinding(
                            tech_id,
                            "travel",
                            "warning",
                            (prev.job.id, cur.job.id),
                            f"{gap:.0f} min between {prev.job.id} and {cur.job.id}, "
                            f"about {need:.0f} min needed to travel and set up",
                        )
                    )
            active.append(cur)
            if prev is None or cur.job.end >= prev.job.end:
                prev = cur
        return out


def _pt(e: EnrichedJob) -> tuple[float, float] | None:
    return None if e.job.lat is None or e.job.lon is None else (e.job.lat, e.job.lon)


def _hm(e: EnrichedJob) -> str:
    """Times as the technician reads them, in the technician's own zone."""
    zone = ZoneInfo(e.technician.timezone if e.technician else "UTC")
    return f"{e.job.start.astimezone(zone):%H:%M}-{e.job.end.astimezone(zone):%H:%M}"
