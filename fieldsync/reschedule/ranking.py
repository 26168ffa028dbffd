"""Keeping the best options: the per-technician frontier of arrival against moves, and the
bounded top-N whose worst score prunes the slot search."""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Generic, TypeVar

from fieldsync.reschedule.instants import _INF
from fieldsync.reschedule.placement import _Placement

T = TypeVar("T")


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
