"""Epoch-second arithmetic shared by the rescheduling engine: every instant becomes a float of
UTC epoch seconds once, so the loops that try slots never touch datetimes or zoneinfo."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

# Float seconds from sums of travel estimates: a microsecond of slack keeps an exact fit
# (prev end + drive == next start) from being rejected by rounding noise.
_EPS = 1e-6
_INF = math.inf
_DAY = timedelta(days=1)


def _ceil(t: float, step: float) -> float:
    return math.ceil((t - _EPS) / step) * step


def _span(start: datetime, end: datetime) -> float:
    """Elapsed seconds. Not `end - start`: Python subtracts two datetimes of the same zone on
    the wall clock, which is an hour off across a DST change."""
    return end.timestamp() - start.timestamp()


def _aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} is naive; times must be time-zone aware")
