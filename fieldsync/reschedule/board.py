"""One technician's day as the slot search reads it: open jobs sorted by start, completed
jobs that only locate the technician, and merged busy blocks from their own calendar, all as
epoch seconds in parallel lists."""

from __future__ import annotations

from bisect import bisect_right
from operator import attrgetter
from typing import TYPE_CHECKING

from fieldsync.domain import JobView, TechnicianView
from fieldsync.reschedule.instants import _EPS, _ceil
from fieldsync.reschedule.model import PRIORITY_RANK, Point, _point

if TYPE_CHECKING:
    from fieldsync.reschedule.context import _Ctx

_START_ID = attrgetter("start", "id")


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
