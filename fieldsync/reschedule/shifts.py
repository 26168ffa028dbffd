"""A technician's shift on one local day as a window of epoch seconds.

DST: a shift edge that falls in a skipped or repeated local hour is read the way that gives
the *narrower* window, so an option never trips the conflict engine's shift check (which reads
the same edges the wider way).
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from fieldsync.reschedule.instants import _DAY


def _window(day: date, start: time, end: time, zone: ZoneInfo) -> tuple[float, float]:
    # end <= start is an overnight shift; equal times a full 24 hours (as the conflict engine).
    end_day = day if end > start else day + _DAY
    return _instant(day, start, zone, later=True), _instant(end_day, end, zone, later=False)


def _instant(day: date, at: time, zone: ZoneInfo, *, later: bool) -> float:
    """A wall-clock time as epoch seconds; for a skipped or repeated local time, the reading
    that narrows the shift."""
    local = datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone)
    first, second = local.timestamp(), local.replace(fold=1).timestamp()
    return max(first, second) if later else min(first, second)
