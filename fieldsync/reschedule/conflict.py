"""Options for an overlap or travel conflict: move one of its jobs later on the same technician
(pushing later jobs if need be) or to another qualified technician."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from connectors.base import BusyBlock
from fieldsync.conflicts import ConflictFinding
from fieldsync.domain import JobTypeView, JobView, TechnicianView
from fieldsync.reschedule.board import _Board
from fieldsync.reschedule.context import _Ctx
from fieldsync.reschedule.instants import _INF
from fieldsync.reschedule.model import PRIORITY_RANK, JobLike, Option, OptionKind, _dur
from fieldsync.reschedule.placement import _earliest, _Placement, _scan
from fieldsync.reschedule.ranking import _frontier, _Top
from fieldsync.reschedule.reasons import _moves, _moves_text, _origin
from fieldsync.travel import TravelModel


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
