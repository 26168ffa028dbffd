"""Push only named (appointment, binding) pairs, through the normal planner and executor.

The retry and drift-repair flows must fix what they were asked to fix and nothing else: the
same appointments may carry pending changes on other calendars (a reassignment, an edit not
yet synced) that belong to the normal sync flows and their guards. So the plan is made from
the ledger exactly as a sync would make it, then cut down to the requested pairs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fieldsync import settings
from fieldsync.sync import executor
from fieldsync.sync.model import Plan, PushReport, SyncItem
from fieldsync.sync.planner import check_mass_deletion
from fieldsync.sync.push_lock import binding_locks

Pair = tuple[str, int]  # (appointment id, calendar binding id)


def only_pairs(planned: Plan, pairs: Collection[Pair]) -> Plan:
    """The planned writes for the requested pairs. Unchanged counts are dropped: they describe
    the whole appointments, not the pairs."""
    wanted = set(pairs)
    return Plan([op for op in planned.ops if (op.appointment_id, op.binding.id) in wanted])


def items_for(items: Sequence[SyncItem], pairs: Collection[Pair]) -> list[SyncItem]:
    """The items the pairs belong to; planning the rest would only cost reads."""
    ids = {appointment_id for appointment_id, _ in pairs}
    return [i for i in items if i.appointment_id in ids]


def _planned(
    items: Sequence[SyncItem], pairs: Collection[Pair], platform: str, db_url: str | None
) -> tuple[Plan, dict[int, int]]:
    planned, counts = executor.plan_items(items, platform=platform, db_url=db_url)
    return only_pairs(planned, pairs), counts


def _bindings_of(planned: Plan) -> set[int]:
    return {op.binding.id for op in planned.ops}


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
    report = PushReport(platform)
    mine = items_for(items, pairs)
    planned, _ = _planned(mine, pairs, platform, db_url)
    held: set[int] = set()
    while True:
        wanted = held | _bindings_of(planned)
        if not wanted:
            return report
        with binding_locks(wanted, db_url):
            held = wanted
            # Plan again under the locks: another run may have written these rows meanwhile.
            planned, counts = _planned(mine, pairs, platform, db_url)
            if not _bindings_of(planned) <= held:
                continue  # a calendar joined the plan meanwhile: lock it too
            # A second pass re-creates events found deleted by hand during the first one.
            for attempt in range(2):
                if attempt:
                    planned, counts = _planned(mine, pairs, platform, db_url)
                check_mass_deletion(
                    planned, counts, minimum=settings.mass_delete_min(), force=force
                )
                # Package-internal: the executor's reserve -> call -> record step, unchanged.
                if not planned.ops or not executor._push_plan(
                    planned, connector_for, report, db_url
                ):
                    break
            return report
