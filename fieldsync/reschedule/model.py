"""What the rescheduling engine takes and gives back: the option and result types, the
priority and movability rules they are built on, and small readers of job inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from fieldsync.domain import AppointmentStatus, EnrichedJob, JobView, Priority
from fieldsync.reschedule.instants import _span

JobLike = JobView | EnrichedJob
Point = tuple[float, float] | None

PRIORITY_RANK: Mapping[Priority, int] = {
    Priority.LOW: 0,
    Priority.NORMAL: 1,
    Priority.HIGH: 2,
    Priority.EMERGENCY: 3,
}
# Only jobs nobody has started on may be moved: en route, in progress and delayed jobs have a
# technician (and a customer) already committed to them.
MOVABLE_STATUSES = frozenset({AppointmentStatus.BOOKED, AppointmentStatus.SCHEDULED})


class OptionKind(StrEnum):
    INSERT = "insert"  # a new job (an emergency) placed on a technician's day
    ASSIGN = "assign"  # a waiting job takes a freed slot
    PULL_FORWARD = "pull_forward"  # a later job of the same technician moves into a freed slot
    REASSIGN = "reassign"  # a booked job moves to another technician
    SHIFT_LATER = "shift_later"  # a booked job moves later on its own technician


class Move(NamedTuple):
    """Another job that has to move for an option to work."""

    job_id: str
    old_start: datetime
    new_start: datetime


@dataclass(frozen=True, slots=True)
class Option:
    """One way to do it. `score` is the ranking key (lower is better, compared left to right;
    its meaning per function is in that function's docstring); `rank` is 1 for the best.
    `from_technician_id`/`from_start` say where `job_id` was before, when it was booked."""

    rank: int
    kind: OptionKind
    job_id: str
    technician_id: str
    start: datetime
    end: datetime
    travel_minutes: float
    moves: tuple[Move, ...]
    score: tuple[float, ...]
    reason: str
    from_technician_id: str | None = None
    from_start: datetime | None = None


@dataclass(frozen=True, slots=True)
class FreedSlot:
    technician_id: str
    start: datetime
    end: datetime

    @property
    def minutes(self) -> float:
        return _span(self.start, self.end) / 60


@dataclass(frozen=True, slots=True)
class CancellationOptions:
    freed: FreedSlot | None  # None: nothing usable freed (past, outside the shift, covered)
    options: list[Option]


@dataclass(frozen=True, slots=True)
class LateJob:
    job_id: str
    old_start: datetime
    new_start: datetime
    minutes_late: float
    past_shift_end: bool


@dataclass(frozen=True, slots=True)
class DelayOptions:
    knock_on: tuple[LateJob, ...]  # the technician's later jobs that now start late, in order
    options: list[Option]


def _view(j: JobLike) -> JobView:
    return j.job if isinstance(j, EnrichedJob) else j


def _dur(v: JobView) -> float:
    return _span(v.start, v.end)


def _point(lat: float | None, lon: float | None) -> Point:
    return None if lat is None or lon is None else (lat, lon)
