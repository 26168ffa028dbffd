"""Instant rescheduling options: concrete, ranked ways to absorb an emergency, a cancellation,
a delay or a conflict in the technicians' days.

Every option respects the job type's required skills, the technician's shift and working days
read in the technician's own time zone, the drive plus setup buffer before the job and before
the job that follows it, the technician's other jobs (unless the option lists them as moved)
and busy time from the technician's own calendar (blocks carrying a job_id are our own events
and are ignored, as `ConflictEngine` does). Nothing here writes anything: the caller decides.

Speed: every instant becomes a float of UTC epoch seconds once, shift windows are resolved per
(zone, shift pattern, local date) and cached, so the loops that try slots never touch
zoneinfo; options go back to aware datetimes, in the technician's zone, only for the few that
are returned.

DST: a shift edge that falls in a skipped or repeated local hour is read the way that gives
the *narrower* window, so an option never trips the conflict engine's shift check (which reads
the same edges the wider way).

The package, by module: `model` (option and result types, priority and movability rules),
`instants` and `shifts` (epoch seconds, shift windows), `context` (one call's normalised
inputs and caches), `board` (a technician's day), `placement` (slot search, knock-on),
`ranking` (frontier, top-N), `reasons` (moves and reason text), and one module per situation:
`emergency`, `cancellation`, `delay`, `conflict`.
"""

from fieldsync.reschedule.cancellation import options_for_cancellation
from fieldsync.reschedule.conflict import options_for_conflict
from fieldsync.reschedule.delay import options_for_delay
from fieldsync.reschedule.emergency import options_for_emergency
from fieldsync.reschedule.model import (
    MOVABLE_STATUSES,
    PRIORITY_RANK,
    CancellationOptions,
    DelayOptions,
    FreedSlot,
    LateJob,
    Move,
    Option,
    OptionKind,
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
