"""Instant rescheduling options: concrete, ranked ways to absorb an emergency, a cancellation,
a delay or a conflict in the technicians' days.

The engine lives in the `fieldsync.reschedule` package (one module per concern); this module
keeps the names the rest of the code and the tests import from here.
"""

from fieldsync.reschedule import (
    MOVABLE_STATUSES,
    PRIORITY_RANK,
    CancellationOptions,
    DelayOptions,
    FreedSlot,
    LateJob,
    Move,
    Option,
    OptionKind,
    options_for_cancellation,
    options_for_conflict,
    options_for_delay,
    options_for_emergency,
)

__all__ = [
    "MOVABLE_STATUSES",
    "PRIORITY_RANK",
    "CancellationOptions",
    "DelayOptions",
    "FreedSlot",
    "LateJob",
    "Move",
    "Option",
    "OptionKind",
    "options_for_cancellation",
    "options_for_conflict",
    "options_for_delay",
    "options_for_emergency",
]
