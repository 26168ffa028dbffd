"""Turning placements back into what an option shows: the moved jobs as `Move`s in the
technician's zone, and the pieces of the one-line reason."""

from __future__ import annotations

from fieldsync.reschedule.board import _Board
from fieldsync.reschedule.context import _Ctx
from fieldsync.reschedule.model import Move


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
