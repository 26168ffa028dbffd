"""Slot search on a technician's day: every point a job can be inserted at (pushing later jobs
only as far as drive and setup force them), the earliest placement that moves nothing, and
the knock-on of a technician running late."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from fieldsync.reschedule.board import _Board
from fieldsync.reschedule.context import _Cand, _Ctx
from fieldsync.reschedule.instants import _EPS, _INF
from fieldsync.reschedule.model import Point

_NO_BUMP = -1
# Predicted starts in a knock-on are estimates; whole minutes read better than 5-minute steps.
_KNOCK_ON_STEP = 60.0


class _Placement(NamedTuple):
    start: float
    travel: float  # seconds of driving to get there
    # Board index of the open job the drive starts from; -1 the home base; -2 - i the board's
    # i-th completed job.
    origin: int
    moves: list[tuple[int, float]]  # (board index, new start) of bumped jobs


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
