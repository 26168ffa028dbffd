"""Options for a delay: the knock-on on the late technician's day, and moving one late job to
another qualified technician to cut the total lateness."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, time

from connectors.base import BusyBlock
from fieldsync.domain import JobTypeView, TechnicianView
from fieldsync.reschedule.context import _Ctx
from fieldsync.reschedule.instants import _DAY, _EPS, _aware, _span
from fieldsync.reschedule.model import (
    DelayOptions,
    JobLike,
    LateJob,
    Option,
    OptionKind,
    _point,
    _view,
)
from fieldsync.reschedule.placement import _earliest, _knock_on, _Placement
from fieldsync.reschedule.ranking import _Top
from fieldsync.reschedule.reasons import _moves, _origin
from fieldsync.travel import TravelModel


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


def _day_end(ctx: _Ctx, tech: TechnicianView, at: float) -> float:
    for ws, we in ctx.windows(tech):
        if ws <= at < we:
            return we
    # Outside any shift (overtime): the technician's local day bounds "later that day".
    zone = ctx.zone(tech.timezone)
    local = datetime.fromtimestamp(at, zone).date() + _DAY
    return datetime.combine(local, time(0), tzinfo=zone).timestamp()
