"""Options for an emergency: the earliest slots any qualified technician can be on site,
bumping lower-priority unstarted jobs later within the shift if need be."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from connectors.base import BusyBlock
from fieldsync.domain import JobTypeView, TechnicianView
from fieldsync.reschedule.board import _Board
from fieldsync.reschedule.context import _Ctx
from fieldsync.reschedule.instants import _EPS
from fieldsync.reschedule.model import PRIORITY_RANK, JobLike, Option, OptionKind, _view
from fieldsync.reschedule.placement import _Placement, _scan
from fieldsync.reschedule.ranking import _frontier, _Top
from fieldsync.reschedule.reasons import _moves, _moves_text, _origin
from fieldsync.travel import TravelModel


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
