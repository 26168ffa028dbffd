"""One engine call's inputs, normalised once (open jobs grouped by technician, job types,
busy time, travel) with per-call caches for time zones, shift windows and boards, and the
job being placed reduced to what the inner loops read."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from connectors.base import BusyBlock
from fieldsync.domain import (
    OPEN_STATUSES,
    AppointmentStatus,
    EnrichedJob,
    JobTypeView,
    JobView,
    TechnicianView,
)
from fieldsync.reschedule.board import _Board
from fieldsync.reschedule.instants import _aware, _span
from fieldsync.reschedule.model import MOVABLE_STATUSES, JobLike, _point
from fieldsync.reschedule.shifts import _window
from fieldsync.travel import GreatCircleTravel, TravelModel


class _Cand:
    """The job being placed, reduced to what the inner loops read."""

    __slots__ = ("dur", "loc", "setup", "skills")

    def __init__(self, view: JobView, job_type: JobTypeView) -> None:
        self.dur = _span(view.start, view.end)
        self.setup = job_type.setup_minutes * 60.0
        self.skills = job_type.required_skills
        self.loc = _point(view.lat, view.lon)


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
