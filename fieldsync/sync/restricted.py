"""Push only named (appointment, binding) pairs, through the normal planner and executor.

The retry and drift-repair flows must fix what they were asked to fix and nothing else: the
same appointments may carry pending changes on other calendars (a reassignment, an edit not
yet synced) that belong to the normal sync flows and their guards. So the plan is made from
the ledger exactly as a sync would make it, then cut down to the requested pairs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fieldsync.sync import executor
from fieldsync.sync.model import PushReport, SyncItem

Pair = tuple[str, int]  # (appointment id, calendar binding id)


def items_for(items: Sequence[SyncItem], pairs: Collection[Pair]) -> list[SyncItem]:
    """The items the pairs belong to; planning the rest would only cost reads."""
    ids = {appointment_id for appointment_id, _ in pairs}
    return [i for i in items if i.appointment_id in ids]


def push_pairs(
    platform: str,
    items: Sequence[SyncItem],
    pairs: Collection[Pair],
    connector_for: executor.ConnectorFactory,
    *,
    force: bool = False,
    db_url: str | None = None,
) -> PushReport:
    """`executor.push_platform` restricted to `pairs`, under the same per-calendar locks, so a
    retry or repair and a sync of the same calendar never both create one event. Each pass
    re-plans from the ledger, so a Prefect retry of the calling task pushes only what is still
    missing."""
    report = executor.push_platform(
        platform, items_for(items, pairs), connector_for, force=force, db_url=db_url,
        only=pairs,
    )  # fmt: skip
    report.unchanged = 0  # counted over whole appointments, not over the pairs
    return report
