"""Instant rescheduling options: concrete, ranked ways to absorb an emergency, a cancellation,
a delay or a conflict in the technicians' days.

Every option respects the job type's required skills, the technician's shift and working days
read in the technician's own time zone, the drive plus setup buffer before the job and before
the job that follows it, the technician's other jobs (unless the option lists them as moved)
and busy time from the technician's own calendar (blocks carrying a job_id are our own events
and are ignored, as `ConflictEngine` does). Nothing here writes anything: the caller decides.

Speed: every instant becomes a float of UTC epoch seconds once, shift windows are resolved per
(zone, shift pattern, local date) and cached, so the loops that try slots never touch
zoneinfo; options go back to aware datetimes, in the technician's zone, only for the few that
are returned.

DST: a shift edge that falls in a skipped or repeated local hour is read the way that gives
the *narrower* window, so an option never trips the conflict engine's shift check (which reads
the same edges the wider way).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Generic, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from connectors.base import BusyBlock
from fieldsync.conflicts import ConflictFinding
from fieldsync.domain import (
    OPEN_STATUSES,
    AppointmentStatus,
    EnrichedJob,
    JobTypeView,
    JobView,
    Priority,
    TechnicianView,
)
from fieldsync.travel import GreatCircleTravel, TravelModel

__all__ = [
    "MOVABLE_STATUSES",
    "PRIORITY_RANK",
    "CancellationOptions",
    "DelayOptions",
    "FreedSlot",
    "LateJob",
    "Move",
    "Option",
    "OptionKind",
    "options_for_cancellation",
    "options_for_conflict",
    "options_for_delay",
    "options_for_emergency",
]

JobLike = JobView | EnrichedJob
T = TypeVar("T")
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

# Float seconds from sums of travel estimates: a microsecond of slack keeps an exact fit
# (prev end + drive == next start) from being rejected by rounding noise.
_EPS = 1e-6
_INF = math.inf
_NO_BUMP = -1
_DAY = timedelta(days=1)
_START_ID = attrgetter("start", "id")
# Predicted starts in a knock-on are estimates; whole minutes read better than 5-minute steps.
_KNOCK_ON_STEP = 60.0


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


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def options_for_emergency(
    job: JobLike,
    *,
    technicians: Iterable[TechnicianView],
    jobs: Iterable[JobLike],
    job_types: Mapping[str, JobTypeView],
    now: datetime,
    busy: Mapping[str, Sequence[BusyBlock]] | None = None,
    travel: TravelModel | None = None,
    limit: int = 5,
    pinned: Collection[str] = (),
    horizon_days: int = 1,
    max_moves: int | None = None,
    step_minutes: int = 5,
) -> list[Option]:
    """The earliest slots any qualified technician can be on site for `job`, from `now` on.

    Open jobs of lower priority that nobody has started (booked/scheduled, not `pinned`) may be
    bumped later within the same shift; each option lists them. Per technician only options
    not beaten on both arrival and number of moves are kept. Ranked by arrival, then fewest
    moves, then travel: score = (minutes from now to arrival, moves, travel minutes).
    `horizon_days` local days are searched (1: the technician's today); `jobs` must cover them.
    """
    v = _view(job)
    ctx = _Ctx(technicians, jobs, job_types, busy, travel, now, pinned, step_minutes,
               exclude=(v.id,), horizon_days=horizon_days)  # fmt: skip
    c = ctx.cand(v)
    bump_below = PRIORITY_RANK[v.priority]
    moves_cap = len(ctx.views) if max_moves is None else max_moves
    top: _Top[tuple[_Board, _Placement]] = _Top(limit)
    need = c.setup + c.dur
    for tech in ctx.techs.values():
        if not c.skills <= tech.skills:
            continue
        board: _Board | None = None
        found: list[_Placement] = []
        bound = top.bound_after(ctx.now)
        for ws, we in ctx.windows(tech):
            # No zoneinfo, no job touched: a shift too short from now on costs one comparison.
            if max(ws, ctx.now) + need > we + _EPS:
                continue
            if board is None:
                board = ctx.board(tech.id)
            found.extend(_scan(ctx, board, ws, we, c, ctx.now, bump_below, bound, moves_cap))
        if board is None:
            continue
        for p in _frontier(found):
            score: tuple[float, ...] = (
                (p.start - ctx.now) / 60,
                float(len(p.moves)),
                p.travel / 60,
            )
            top.offer(score, tech.id, (board, p))
    out = []
    for rank, (score, (board, p)) in enumerate(top.items, 1):
        moved = _moves(ctx, board, p.moves)
        origin = _origin(board, p.origin)
        reason = (
            f"{board.tech.name} on site {ctx.hm(board, p.start)}, "
            f"{p.travel / 60:.0f} min drive from {origin}; "
            + (_moves_text(moved) if moved else "nothing else moves")
        )
        out.append(
            Option(
                rank,
                OptionKind.INSERT,
                v.id,
                board.tech.id,
                ctx.dt(board, p.start),
                ctx.dt(board, p.start + c.dur),
                p.travel / 60,
                moved,
                score,
                reason,
            )
        )
    return out


def options_for_cancellation(
    canceled_job: JobLike,
    waiting_jobs: Iterable[JobLike],
    *,
    technicians: Iterable[TechnicianView],
    jobs: Iterable[JobLike],
    job_types: Mapping[str, JobTypeView],
    now: datetime,
    busy: Mapping[str, Sequence[BusyBlock]] | None = None,
    travel: TravelModel | None = None,
    limit: int = 5,
    pinned: Collection[str] = (),
    step_minutes: int = 5,
) -> CancellationOptions:
    """The free time the cancellation opens on its technician's day, and the jobs that could
    take it: waiting ones first (they have no slot at all), then the same technician's later
    jobs pulled forward, then other technicians' flexible jobs. A job takes the slot if the
    technician is qualified and it starts inside the freed time with travel and setup buffers
    kept on both sides, moving nothing else.
    score = (class 0/1/2 as above, -priority, minutes away from its booked start, travel)."""
    cv = _view(canceled_job)
    ctx = _Ctx(
        technicians, jobs, job_types, busy, travel, now, pinned, step_minutes, exclude=(cv.id,)
    )
    tech = ctx.techs.get(cv.technician_id or "")
    if tech is None:
        return CancellationOptions(None, [])
    board = ctx.board(tech.id)
    gap = _freed_gap(ctx, board, cv)
    if gap is None:
        return CancellationOptions(None, [])
    ws, we, gs, ge = gap
    freed = FreedSlot(tech.id, ctx.dt(board, gs), ctx.dt(board, ge))

    waiting = [w for w in map(_view, waiting_jobs) if w.id != cv.id and w.status in OPEN_STATUSES]
    waiting_ids = {w.id for w in waiting}
    candidates: list[tuple[int, JobView]] = [(0, w) for w in waiting]
    for v in ctx.views:
        if v.id in waiting_ids or not ctx.movable(v) or v.technician_id not in ctx.techs:
            continue
        if v.technician_id == tech.id:
            candidates.append((1, v))
        elif v.start.timestamp() > ctx.now:
            candidates.append((2, v))

    top: _Top[tuple[int, JobView, _Placement]] = _Top(limit)
    for cls, v in candidates:
        c = ctx.cand(v)
        if not c.skills <= tech.skills or c.setup + c.dur > ge - gs + _EPS:
            continue
        booked = v.start.timestamp()
        # A job already on this day must not collide with its own old slot.
        b = ctx.board(tech.id, exclude=v.id) if v.technician_id == tech.id else board
        # Starting before ge keeps the job inside the freed time: the scan respects whatever
        # bounds the gap, so a job starting in it also ends in it (plus, for a pulled-forward
        # job, its own old slot).
        latest = min(ge, booked) if cls == 1 else ge
        got = _earliest(ctx, b, [(ws, we)], c, gs, latest - _EPS * 2)
        if got is None:
            continue
        p = got
        score: tuple[float, ...] = (
            float(cls),
            float(-PRIORITY_RANK[v.priority]),
            abs(p.start - booked) / 60,
            p.travel / 60,
        )
        top.offer(score, v.id, (cls, v, p))
    kinds = (OptionKind.ASSIGN, OptionKind.PULL_FORWARD, OptionKind.REASSIGN)
    out = []
    for rank, (score, (cls, v, p)) in enumerate(top.items, 1):
        dur = _span(v.start, v.end)
        what = ("waiting job", "later job pulled forward", f"moved from {v.technician_id}")[cls]
        reason = (
            f"{v.id} ({v.priority}, {what}) fits at {ctx.hm(board, p.start)}, "
            f"{p.travel / 60:.0f} min drive from {_origin(board, p.origin)}"
        )
        out.append(
            Option(
                rank,
                kinds[cls],
                v.id,
                tech.id,
                ctx.dt(board, p.start),
                ctx.dt(board, p.start + dur),
                p.travel / 60,
                (),
                score,
                reason,
                v.technician_id if cls else None,
                v.start if cls else None,
            )
        )
    return CancellationOptions(freed, out)


def options_for_delay(
    job: JobLike,
    new_eta: datetime,
    *,
    technicians: Iterable[TechnicianView],
    jobs: Iterable[JobLike],
    job_types: Mapping[str, JobTypeView],
    now: datetime,
    busy: Mapping[str, Sequence[BusyBlock]] | None = None,
    travel: TravelModel | None = None,
    limit: int = 5,
    pinned: Collection[str] = (),
    step_minutes: int = 5,
) -> DelayOptions:
    """`job` now starts at `new_eta`: which of the technician's later jobs that day start late
    and by how much (each pushed only as far as the drive and setup force it, never onto busy
    time), and options moving one late job to another qualified technician (no bumping there).
    Each option's moves are the lateness left on the delayed technician's day.
    score = (total minutes late after the move, jobs still late, travel minutes)."""
    jv = _view(job)
    ctx = _Ctx(
        technicians, jobs, job_types, busy, travel, now, pinned, step_minutes, exclude=(jv.id,)
    )
    tech = ctx.techs.get(jv.technician_id or "")
    if tech is None:
        return DelayOptions((), [])
    _aware(new_eta)
    board = ctx.board(tech.id)
    start = jv.start.timestamp()
    day_end = _day_end(ctx, tech, start)
    later = [k for k in range(len(board.ids)) if start <= board.starts[k] < day_end]
    origin = _point(jv.lat, jv.lon)
    eta_end = new_eta.timestamp() + _span(jv.start, jv.end)
    chain = _knock_on(board, later, origin, eta_end)
    knock = tuple(
        LateJob(
            board.ids[k],
            ctx.dt(board, board.starts[k]),
            ctx.dt(board, ns),
            (ns - board.starts[k]) / 60,
            ns + board.durs[k] > day_end + _EPS,
        )
        for k, ns in chain
    )
    top: _Top[tuple[int, str, _Placement, list[tuple[int, float]]]] = _Top(limit)
    for k, _ in chain:
        if not board.movable[k]:
            continue
        rest = _knock_on(board, later, origin, eta_end, skip=k)
        rest_late = sum(ns - board.starts[j] for j, ns in rest)
        c = ctx.cand(board.views[k])
        not_before = max(board.starts[k], ctx.now)
        for other in ctx.techs.values():
            if other.id == tech.id or not c.skills <= other.skills:
                continue
            wins = [(ws, we) for ws, we in ctx.windows(other) if max(ws, not_before) + c.dur < we]
            if not wins:
                continue
            # Only a start that keeps the total lateness within the current top can enter.
            latest = top.bound_after(board.starts[k] - rest_late)
            p = _earliest(ctx, ctx.board(other.id), wins, c, not_before, latest)
            if p is None:
                continue
            late = max(0.0, p.start - board.starts[k]) + rest_late
            score: tuple[float, ...] = (late / 60, float(len(rest)), p.travel / 60)
            top.offer(score, f"{other.id} {board.ids[k]}", (k, other.id, p, rest))
    before = sum(j.minutes_late for j in knock)
    out = []
    for rank, (score, (k, other_id, p, rest)) in enumerate(top.items, 1):
        ob = ctx.board(other_id)
        moved = _moves(ctx, board, rest)
        reason = (
            f"{board.ids[k]} to {ob.tech.name} at {ctx.hm(ob, p.start)} "
            f"({p.travel / 60:.0f} min drive from {_origin(ob, p.origin)}); lateness "
            f"{before:.0f} -> {score[0]:.0f} min"
        )
        out.append(
            Option(
                rank,
                OptionKind.REASSIGN,
                board.ids[k],
                other_id,
                ctx.dt(ob, p.start),
                ctx.dt(ob, p.start + board.durs[k]),
                p.travel / 60,
                moved,
                score,
                reason,
                tech.id,
                ctx.dt(board, board.starts[k]),
            )
        )
    return DelayOptions(knock, out)


def options_for_conflict(
    finding: ConflictFinding,
    *,
    technicians: Iterable[TechnicianView],
    jobs: Iterable[JobLike],
    job_types: Mapping[str, JobTypeView],
    now: datetime,
    busy: Mapping[str, Sequence[BusyBlock]] | None = None,
    travel: TravelModel | None = None,
    limit: int = 5,
    pinned: Collection[str] = (),
    max_moves: int | None = None,
    step_minutes: int = 5,
) -> list[Option]:
    """Ways to resolve an overlap or travel conflict: move one of its (unstarted, unpinned)
    jobs later on the same technician, pushing later jobs of no higher priority if need be, or
    to another qualified technician at or after its booked time without moving anything.
    score = (minutes the job moves from its booked start, moves, travel minutes)."""
    ctx = _Ctx(technicians, jobs, job_types, busy, travel, now, pinned, step_minutes, exclude=())
    by_id = {v.id: v for v in ctx.views}
    moves_cap = len(ctx.views) if max_moves is None else max_moves
    top: _Top[tuple[OptionKind, JobView, _Board, _Placement]] = _Top(limit)
    for jid in dict.fromkeys(finding.appointment_ids):
        v = by_id.get(jid)
        if v is None or not ctx.movable(v):
            continue
        c = ctx.cand(v)
        booked = v.start.timestamp()
        # The job's own technician, which is the finding's unless the jobs changed since.
        tech = ctx.techs.get(v.technician_id or "")
        if tech is not None and c.skills <= tech.skills:
            b = ctx.board(tech.id, exclude=jid)
            # Strictly later: the job staying put is the conflict, not a way out of it.
            not_before = max(booked + ctx.step, ctx.now)
            # Pushing jobs of the same priority is fair here: they are pushed to clear a
            # double-booking, not to make room for something new.
            bump = PRIORITY_RANK[v.priority] + 1
            found: list[_Placement] = []
            for ws, we in ctx.windows(tech):
                found.extend(_scan(ctx, b, ws, we, c, not_before, bump, _INF, moves_cap))
            for p in _frontier(found):
                score: tuple[float, ...] = (
                    (p.start - booked) / 60,
                    float(len(p.moves)),
                    p.travel / 60,
                )
                top.offer(score, f"{tech.id} {jid}", (OptionKind.SHIFT_LATER, v, b, p))
        not_before = max(booked, ctx.now)
        for other in ctx.techs.values():
            if other.id == v.technician_id or not c.skills <= other.skills:
                continue
            wins = [(ws, we) for ws, we in ctx.windows(other) if max(ws, not_before) + c.dur < we]
            if not wins:
                continue
            ob = ctx.board(other.id)
            got = _earliest(ctx, ob, wins, c, not_before, top.bound_after(booked))
            if got is not None:
                delay = (got.start - booked) / 60
                top.offer(
                    (delay, 0.0, got.travel / 60),
                    f"{other.id} {jid}",
                    (OptionKind.REASSIGN, v, ob, got),
                )
    out = []
    for rank, (score, (kind, v, b, p)) in enumerate(top.items, 1):
        moved = _moves(ctx, b, p.moves)
        where = "later" if kind is OptionKind.SHIFT_LATER else f"to {b.tech.name}"
        reason = (
            f"{v.id} {where} at {ctx.hm(b, p.start)} ({score[0]:+.0f} min), "
            f"{p.travel / 60:.0f} min drive from {_origin(b, p.origin)}; "
            + (_moves_text(moved) if moved else "nothing else moves")
        )
        out.append(
            Option(
                rank,
                kind,
                v.id,
                b.tech.id,
                ctx.dt(b, p.start),
                ctx.dt(b, p.start + _dur(v)),
                p.travel / 60,
                moved,
                score,
                reason,
                v.technician_id,
                v.start,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class _Cand:
    """The job being placed, reduced to what the inner loops read."""

    __slots__ = ("dur", "loc", "setup", "skills")

    def __init__(self, view: JobView, job_type: JobTypeView) -> None:
        self.dur = _span(view.start, view.end)
        self.setup = job_type.setup_minutes * 60.0
        self.skills = job_type.required_skills
        self.loc = _point(view.lat, view.lon)


class _Placement(NamedTuple):
    start: float
    travel: float  # seconds of driving to get there
    # Board index of the open job the drive starts from; -1 the home base; -2 - i the board's
    # i-th completed job.
    origin: int
    moves: list[tuple[int, float]]  # (board index, new start) of bumped jobs


class _Board:
    """One technician's open jobs (sorted by start) and external busy time, as epoch seconds
    in parallel lists: the slot search reads them thousands of times per call."""

    __slots__ = (
        "_pairs", "be", "bs", "done_ends", "done_ids", "done_locs", "durs", "ends", "home",
        "ids", "locs", "movable", "prios", "setups", "starts", "tech", "travel", "views", "zone",
    )  # fmt: skip

    def __init__(
        self, ctx: _Ctx, tech: TechnicianView, views: list[JobView], done: list[JobView]
    ) -> None:
        views.sort(key=_START_ID)
        self.tech = tech
        self.zone = ctx.zone(tech.timezone)
        self.home = _point(tech.home_lat, tech.home_lon)
        self.travel = ctx.travel
        self.views = views
        self.ids = [v.id for v in views]
        self.starts = [v.start.timestamp() for v in views]
        self.ends = [v.end.timestamp() for v in views]
        self.durs = [e - s for s, e in zip(self.starts, self.ends, strict=True)]
        self.locs = [_point(v.lat, v.lon) for v in views]
        setup = ctx.setup_seconds
        self.setups = [setup(v.job_type) for v in views]
        self.prios = [PRIORITY_RANK[v.priority] for v in views]
        self.movable = [ctx.movable(v) for v in views]
        self._pairs: dict[int, float] = {}
        # Completed jobs only locate the technician; they hold no time.
        self.done_ids = [v.id for v in done]
        self.done_ends = [v.end.timestamp() for v in done]
        self.done_locs = [_point(v.lat, v.lon) for v in done]
        blocks = sorted(
            (b.start.timestamp(), b.end.timestamp())
            for b in ctx.busy.get(tech.id, ())
            if b.job_id is None and b.end > b.start
        )
        # Merged, both lists are sorted, so one bisect finds the first block that can collide.
        bs: list[float] = []
        be: list[float] = []
        for s, e in blocks:
            if be and s <= be[-1]:
                be[-1] = max(be[-1], e)
            else:
                bs.append(s)
                be.append(e)
        self.bs, self.be = bs, be

    def where(self, k: int) -> Point:
        """Location of an origin as `_Placement.origin` encodes it."""
        if k >= 0:
            return self.locs[k]
        return self.home if k == -1 else self.done_locs[-2 - k]

    def drive(self, a: Point, b: Point) -> float:
        return self.travel.minutes(a, b) * 60.0

    def pair(self, k: int, j: int) -> float:
        """Drive from job k to job j; memoised because every slot tried re-walks the same
        chain of later jobs."""
        key = k * 65_536 + j
        got = self._pairs.get(key)
        if got is None:
            got = self._pairs[key] = self.drive(self.locs[k], self.locs[j])
        return got

    def place(
        self, free_at: float, lead: float, dur: float, not_before: float, step: float
    ) -> float:
        """Earliest start, on the step grid, with `lead` (drive + setup) after `free_at` and
        neither the lead-in nor the job itself on busy time: a technician at a personal
        appointment is neither driving nor working."""
        t = free_at + lead
        if t < not_before:
            t = not_before
        t = _ceil(t, step)
        be = self.be
        if not be:
            return t
        bs, n = self.bs, len(be)
        while True:
            i = bisect_right(be, t - lead + _EPS)
            if i < n and bs[i] < t + dur - _EPS:
                t = _ceil(be[i] + lead, step)
            else:
                return t


def _scan(
    ctx: _Ctx,
    b: _Board,
    ws: float,
    we: float,
    c: _Cand,
    not_before: float,
    bump_below: int,
    bound: float,
    max_moves: int,
) -> list[_Placement]:
    """Every insertion point of `c` in one shift window, earliest first, by a linear walk over
    the technician's jobs. A point after job i pushes the jobs from i+1 on only as far as the
    drive and setup force them; the push stops at the first job it no longer reaches, so a
    day's later jobs are visited only while they are actually affected. Jobs may be pushed
    only if movable, of priority below `bump_below`, and still inside the window.

    Stops once no later point can start by `bound` or beat a zero-move placement found."""
    starts, ends, durs, locs, setups = b.starts, b.ends, b.durs, b.locs, b.setups
    movable, prios = b.movable, b.prios
    now = ctx.now
    anchor = ws if ws > now else now
    step = ctx.step
    # Jobs that ended before the anchor only say where the technician is: at the last one
    # that ended within the shift, else at the home base.
    ahead: list[int] = []
    at_end, at = -_INF, -1
    for k in range(len(starts)):
        e = ends[k]
        if e > anchor:
            ahead.append(k)
        elif e > ws and e > at_end:
            at_end, at = e, k
    # A job finished early leaves the technician at its site now, not at its booked end.
    for i, e in enumerate(b.done_ends):
        e = min(e, anchor)
        if e > ws and e > at_end:
            at_end, at = e, -2 - i
    out: list[_Placement] = []
    best_zero = _INF
    prev_end, prev = anchor, at
    cloc, cdur, csetup = c.loc, c.dur, c.setup
    n = len(ahead)
    for m in range(n + 1):
        if m:
            k = ahead[m - 1]
            if ends[k] > prev_end:
                prev_end, prev = ends[k], k
        lb = prev_end + csetup
        if lb < not_before:
            lb = not_before
        if lb > bound or lb >= best_zero or lb + cdur > we + _EPS:
            break
        tr = b.drive(b.where(prev), cloc)
        t = b.place(prev_end, tr + csetup, cdur, not_before, step)
        if t > bound or t >= best_zero or t + cdur > we + _EPS:
            continue
        moves: list[tuple[int, float]] = []
        pe = t + cdur
        ok = True
        for q in range(m, n):
            k = ahead[q]
            lead = (b.drive(cloc, locs[k]) if q == m else b.pair(ahead[q - 1], k)) + setups[k]
            if pe + lead <= starts[k] + _EPS:
                break
            # A job already due may be under way whatever its status says: never bump it.
            if (
                not movable[k]
                or prios[k] >= bump_below
                or starts[k] <= now
                or len(moves) >= max_moves
            ):
                ok = False
                break
            ns = b.place(pe, lead, durs[k], starts[k], step)
            pe = ns + durs[k]
            if pe > we + _EPS:
                ok = False
                break
            moves.append((k, ns))
        if ok:
            out.append(_Placement(t, tr, prev, moves))
            if not moves:
                best_zero = t
    return out


def _earliest(
    ctx: _Ctx,
    b: _Board,
    windows: Iterable[tuple[float, float]],
    c: _Cand,
    not_before: float,
    latest_start: float,
) -> _Placement | None:
    """The earliest placement that moves nothing, starting no later than `latest_start`."""
    best: _Placement | None = None
    for ws, we in windows:
        bound = latest_start if best is None else min(latest_start, best.start)
        for p in _scan(ctx, b, ws, we, c, not_before, _NO_BUMP, bound, 0):
            if best is None or (p.start, p.travel) < (best.start, best.travel):
                best = p
    return best


def _knock_on(
    b: _Board,
    later: list[int],
    loc: Point,
    free_at: float,
    *,
    skip: int = -1,
) -> list[tuple[int, float]]:
    """Later jobs pushed by a technician free at `free_at` at `loc`: each starts once the
    drive and setup allow (and off busy time), and the push ends at the first job it misses."""
    out: list[tuple[int, float]] = []
    for k in later:
        if k == skip:
            continue
        lead = b.drive(loc, b.locs[k]) + b.setups[k]
        if free_at + lead <= b.starts[k] + _EPS:
            break
        ns = b.place(free_at, lead, b.durs[k], b.starts[k], _KNOCK_ON_STEP)
        out.append((k, ns))
        loc, free_at = b.locs[k], ns + b.durs[k]
    return out


def _freed_gap(ctx: _Ctx, b: _Board, cv: JobView) -> tuple[float, float, float, float] | None:
    """(window start, window end, gap start, gap end) of the longest stretch of free time that
    the canceled job leaves within its shift, from now on."""
    cs, ce = cv.start.timestamp(), cv.end.timestamp()
    obstacles = sorted([*zip(b.starts, b.ends, strict=True), *zip(b.bs, b.be, strict=True)])
    for ws, we in ctx.windows(b.tech):
        lo = max(ws, ctx.now)
        hi = min(we, ce)
        p = max(lo, cs)
        best: tuple[float, float] | None = None
        while p < hi:
            # Step over whatever covers p, then the gap runs to the next obstacle.
            for s, e in obstacles:
                if s <= p < e:
                    p = e
            if p >= hi:
                break
            gs = max([lo, *(e for s, e in obstacles if e <= p)])
            ge = min([we, *(s for s, e in obstacles if s > p)])
            if best is None or ge - gs > best[1] - best[0]:
                best = (gs, ge)
            p = ge
        if best is not None:
            return ws, we, best[0], best[1]
    return None


def _day_end(ctx: _Ctx, tech: TechnicianView, at: float) -> float:
    for ws, we in ctx.windows(tech):
        if ws <= at < we:
            return we
    # Outside any shift (overtime): the technician's local day bounds "later that day".
    zone = ctx.zone(tech.timezone)
    local = datetime.fromtimestamp(at, zone).date() + _DAY
    return datetime.combine(local, time(0), tzinfo=zone).timestamp()


def _frontier(found: list[_Placement]) -> list[_Placement]:
    """Placements not beaten on both arrival and number of moves, earliest first."""
    found.sort(key=lambda p: (p.start, len(p.moves), p.travel))
    out: list[_Placement] = []
    fewest = math.inf
    for p in found:
        if len(p.moves) < fewest:
            out.append(p)
            fewest = len(p.moves)
    return out


class _Top(Generic[T]):
    """The best `limit` items by (score, tie-break). Limits are small, so a sorted list beats a
    heap and gives the current worst score (the scan's pruning bound) for free."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.keys: list[tuple[tuple[float, ...], str]] = []
        self.items: list[tuple[tuple[float, ...], T]] = []

    @property
    def bound(self) -> float:
        """The largest first score component that can still enter."""
        if self.limit == 0:
            return -_INF
        if len(self.keys) < self.limit:
            return _INF
        return self.keys[-1][0][0]

    def bound_after(self, booked: float) -> float:
        """`bound` for scores in minutes after `booked`, as an instant."""
        b = self.bound
        return b if math.isinf(b) else booked + b * 60

    def offer(self, score: tuple[float, ...], tie: str, item: T) -> None:
        key = (score, tie)
        if self.limit == 0 or (len(self.keys) == self.limit and key >= self.keys[-1]):
            return
        i = bisect_right(self.keys, key)
        self.keys.insert(i, key)
        self.items.insert(i, (score, item))
        if len(self.keys) > self.limit:
            self.keys.pop()
            self.items.pop()


class _Ctx:
    """One call's inputs, normalised once: open jobs grouped by technician, and caches for the
    zone, shift-window and board work each technician needs at most once."""

    def __init__(
        self,
        technicians: Iterable[TechnicianView],
        jobs: Iterable[JobLike],
        job_types: Mapping[str, JobTypeView],
        busy: Mapping[str, Sequence[BusyBlock]] | None,
        travel: TravelModel | None,
        now: datetime,
        pinned: Collection[str],
        step_minutes: int,
        *,
        exclude: Collection[str],
        horizon_days: int = 1,
    ) -> None:
        _aware(now)
        if step_minutes < 1:
            raise ValueError("step_minutes must be at least 1")
        self.now_dt = now
        self.now = now.timestamp()
        self.step = step_minutes * 60.0
        self.horizon = max(1, horizon_days)
        self.techs = {t.id: t for t in technicians}
        self.busy: Mapping[str, Sequence[BusyBlock]] = busy or {}
        self.travel: TravelModel = travel if travel is not None else GreatCircleTravel()
        self.pinned = frozenset(pinned)
        self._types = dict(job_types)
        self._zones: dict[str, ZoneInfo] = {}
        self._setups: dict[str, float] = {}
        self._windows: dict[tuple[str, time, time, tuple[int, ...]], list[tuple[float, float]]]
        self._windows = {}
        self._boards: dict[tuple[str, str | None], _Board] = {}
        excluded = frozenset(exclude)
        by_tech: dict[str, list[JobView]] = {}
        done: dict[str, list[JobView]] = {}
        views: list[JobView] = []
        for j in jobs:
            if isinstance(j, EnrichedJob):
                if j.job_type is not None and j.job_type.name not in self._types:
                    self._types[j.job_type.name] = j.job_type
                j = j.job
            tid = j.technician_id
            if tid is None or j.id in excluded:
                continue
            if j.status not in OPEN_STATUSES:
                if j.status is AppointmentStatus.COMPLETED:
                    # Finished work still says where the technician is.
                    done.setdefault(tid, []).append(j)
                continue
            if j.start.tzinfo is None:
                raise ValueError(f"job {j.id} has a naive start; times must be time-zone aware")
            views.append(j)
            group = by_tech.get(tid)
            if group is None:
                by_tech[tid] = [j]
            else:
                group.append(j)
        self.views = views
        self._by_tech = by_tech
        self._done = done

    def job_type(self, name: str) -> JobTypeView:
        jt = self._types.get(name)
        if jt is None:
            # An unknown type asks for no skills and no setup: the best reading of no data,
            # and the one enrichment and the conflict engine use too.
            jt = self._types[name] = JobTypeView(name)
        return jt

    def setup_seconds(self, name: str) -> float:
        got = self._setups.get(name)
        if got is None:
            got = self._setups[name] = self.job_type(name).setup_minutes * 60.0
        return got

    def cand(self, v: JobView) -> _Cand:
        _aware(v.start)
        return _Cand(v, self.job_type(v.job_type))

    def movable(self, v: JobView) -> bool:
        return v.status in MOVABLE_STATUSES and v.id not in self.pinned

    def zone(self, name: str) -> ZoneInfo:
        z = self._zones.get(name)
        if z is None:
            z = self._zones[name] = ZoneInfo(name)
        return z

    def windows(self, tech: TechnicianView) -> list[tuple[float, float]]:
        """Shift windows still open at `now`, from the technician's local today for the
        horizon, plus last night's overnight shift. Cached by zone and shift pattern, so 500
        technicians sharing a few patterns cost a few zoneinfo calls, not 500."""
        key = (tech.timezone, tech.shift_start, tech.shift_end, tech.work_days)
        got = self._windows.get(key)
        if got is None:
            zone = self.zone(tech.timezone)
            today = self.now_dt.astimezone(zone).date()
            got = []
            for offset in range(-1, self.horizon):
                day = today + timedelta(days=offset)
                if day.weekday() in tech.work_days:
                    ws, we = _window(day, tech.shift_start, tech.shift_end, zone)
                    if we > self.now and we > ws:
                        got.append((ws, we))
            self._windows[key] = got
        return got

    def board(self, tech_id: str, *, exclude: str | None = None) -> _Board:
        key = (tech_id, exclude)
        b = self._boards.get(key)
        if b is None:
            views = [v for v in self._by_tech.get(tech_id, ()) if v.id != exclude]
            done = self._done.get(tech_id, [])
            b = self._boards[key] = _Board(self, self.techs[tech_id], views, done)
        return b

    def dt(self, b: _Board, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, b.zone)

    def hm(self, b: _Board, ts: float) -> str:
        return f"{self.dt(b, ts):%H:%M %Z}"


def _window(day: date, start: time, end: time, zone: ZoneInfo) -> tuple[float, float]:
    # end <= start is an overnight shift; equal times a full 24 hours (as the conflict engine).
    end_day = day if end > start else day + _DAY
    return _instant(day, start, zone, later=True), _instant(end_day, end, zone, later=False)


def _instant(day: date, at: time, zone: ZoneInfo, *, later: bool) -> float:
    """A wall-clock time as epoch seconds; for a skipped or repeated local time, the reading
    that narrows the shift."""
    local = datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone)
    first, second = local.timestamp(), local.replace(fold=1).timestamp()
    return max(first, second) if later else min(first, second)


def _ceil(t: float, step: float) -> float:
    return math.ceil((t - _EPS) / step) * step


def _moves(ctx: _Ctx, b: _Board, moves: list[tuple[int, float]]) -> tuple[Move, ...]:
    return tuple(Move(b.ids[k], ctx.dt(b, b.starts[k]), ctx.dt(b, ns)) for k, ns in moves)


def _moves_text(moves: tuple[Move, ...]) -> str:
    # Three are enough to judge an option by; the full list is in Option.moves.
    shown = ", ".join(f"{m.job_id} {m.old_start:%H:%M}->{m.new_start:%H:%M}" for m in moves[:3])
    if len(moves) > 3:
        shown += f" and {len(moves) - 3} more"
    return f"{len(moves)} job{'s' if len(moves) > 1 else ''} move later: {shown}"


def _origin(b: _Board, k: int) -> str:
    if k == -1:
        return "home base"
    return b.ids[k] if k >= 0 else b.done_ids[-2 - k]


def _view(j: JobLike) -> JobView:
    return j.job if isinstance(j, EnrichedJob) else j


def _dur(v: JobView) -> float:
    return _span(v.start, v.end)


def _span(start: datetime, end: datetime) -> float:
    """Elapsed seconds. Not `end - start`: Python subtracts two datetimes of the same zone on
    the wall clock, which is an hour off across a DST change."""
    return end.timestamp() - start.timestamp()


def _point(lat: float | None, lon: float | None) -> Point:
    return None if lat is None or lon is None else (lat, lon)


def _aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} is naive; times must be time-zone aware")
