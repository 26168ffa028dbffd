"""Options for a cancellation: the free time it opens on its technician's day, and the waiting,
later or other technicians' jobs that could take it without moving anything else."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from connectors.base import BusyBlock
from fieldsync.domain import OPEN_STATUSES, JobTypeView, JobView, TechnicianView
from fieldsync.reschedule.board import _Board
from fieldsync.reschedule.context import _Ctx
from fieldsync.reschedule.instants import _EPS, _span
from fieldsync.reschedule.model import (
    PRIORITY_RANK,
    CancellationOptions,
    FreedSlot,
    JobLike,
    Option,
    OptionKind,
    _view,
)
from fieldsync.reschedule.placement import _earliest, _Placement
from fieldsync.reschedule.ranking import _Top
from fieldsync.reschedule.reasons import _origin
from fieldsync.travel import TravelModel


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
