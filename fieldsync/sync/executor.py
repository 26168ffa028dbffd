"""Push one platform's share of a sync: plan from the ledger, reserve, call, record.

Order matters for crash safety: the idempotency key is committed before the remote call, and
each chunk's outcome is committed right after it, so a re-run after any crash pushes exactly
what is still missing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from connectors.base import CalendarConnector, Op, OpResult, RemoteRef
from connectors.errors import NotFoundError
from fieldsync import settings
from fieldsync.domain import BindingView, OpKind
from fieldsync.store.db import session_scope
from fieldsync.sync import ledger_store
from fieldsync.sync.model import Plan, PlannedOp, PushReport, SyncItem
from fieldsync.sync.planner import MassDeletionBlocked, check_mass_deletion, plan
from fieldsync.sync.push_lock import binding_locks

__all__ = ["MassDeletionBlocked", "OpKind", "guard", "plan_items", "push_platform"]

log = logging.getLogger(__name__)

ConnectorFactory = Callable[[BindingView], CalendarConnector]
CHUNK = 500


def plan_items(
    items: Sequence[SyncItem],
    *,
    platform: str | None = None,
    db_url: str | None = None,
    only: Collection[tuple[str, int]] | None = None,
) -> tuple[Plan, dict[int, int]]:
    """Read-only: what a push would do, and the live event count per affected binding.
    `only` keeps the writes of those (appointment, binding) pairs and nothing else: the retry
    and drift-repair flows fix what they were asked to, and leave other pending changes of
    the same jobs to the sync flows."""
    ids = [i.appointment_id for i in items]
    with session_scope(db_url) as session:
        rows = ledger_store.load_rows(session, ids, platform)
        bindings = ledger_store.load_bindings(session, {r.binding_id for r in rows})
        planned = plan(items, rows, bindings, platform=platform)
        if only is not None:
            wanted = set(only)
            planned = Plan([op for op in planned.ops
                            if (op.appointment_id, op.binding.id) in wanted])  # fmt: skip
        deleting = {op.binding.id for op in planned.ops if op.kind is OpKind.DELETE}
        counts = ledger_store.live_counts(session, deleting) if deleting else {}
    return planned, counts


def guard(items: Sequence[SyncItem], *, force: bool, db_url: str | None = None) -> Plan:
    planned, counts = plan_items(items, db_url=db_url)
    check_mass_deletion(planned, counts, minimum=settings.mass_delete_min(), force=force)
    return planned


def push_platform(
    platform: str,
    items: Sequence[SyncItem],
    connector_for: ConnectorFactory,
    *,
    force: bool = False,
    db_url: str | None = None,
    only: Collection[tuple[str, int]] | None = None,
) -> PushReport:
    """Plan, lock every calendar the plan writes to, plan again under the locks (another run
    may have written meanwhile), push. `only` restricts the writes to those pairs."""
    report = PushReport(platform)

    def planned_now() -> tuple[Plan, dict[int, int]]:
        return plan_items(items, platform=platform, db_url=db_url, only=only)

    planned, _ = planned_now()
    report.unchanged = planned.unchanged
    held: set[int] = set()
    while True:
        wanted = held | _bindings_of(planned)
        if not wanted:
            return report
        with binding_locks(wanted, db_url):
            held = wanted
            planned, counts = planned_now()
            if not _bindings_of(planned) <= held:
                continue  # another run added a calendar meanwhile: lock that one too
            report.unchanged = planned.unchanged
            report.stale = planned.stale
            # A second pass re-creates events found deleted by hand during the first one.
            for attempt in range(2):
                if attempt:
                    planned, counts = planned_now()
                check_mass_deletion(
                    planned, counts, minimum=settings.mass_delete_min(), force=force
                )
                if not planned.ops or not _push_plan(planned, connector_for, report, db_url):
                    break
            return report


def _bindings_of(planned: Plan) -> set[int]:
    return {op.binding.id for op in planned.ops}


def _push_plan(
    planned: Plan, connector_for: ConnectorFactory, report: PushReport, db_url: str | None
) -> int:
    with session_scope(db_url) as session:
        by_row = ledger_store.reserve(session, planned.ops)

    groups: dict[int, list[tuple[int, PlannedOp]]] = defaultdict(list)
    for row_id, op in by_row.items():
        groups[op.binding.id].append((row_id, op))

    connectors: dict[tuple[str, str | None], CalendarConnector] = {}
    for row_ops in groups.values():
        b = row_ops[0][1].binding
        if (b.platform, b.credentials_block) not in connectors:
            connectors[(b.platform, b.credentials_block)] = connector_for(b)
    workers = max(c.max_parallel_calendars for c in connectors.values())

    def run(binding_ops: Sequence[tuple[int, PlannedOp]]) -> list[OpResult]:
        binding = binding_ops[0][1].binding
        connector = connectors[(binding.platform, binding.credentials_block)]
        ops = [
            Op(
                row_id,
                op.kind,
                op.key,
                op.event,
                RemoteRef(op.remote_id, op.etag) if op.remote_id else None,
                retry=op.attempts > 0,
            )
            for row_id, op in binding_ops
        ]
        return connector.push(binding.calendar_id, ops)

    gone = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="push") as pool:
            futures: list[Future[list[OpResult]]] = [
                pool.submit(run, part)
                for row_ops in groups.values()
                for part in ledger_store.chunks(row_ops, CHUNK)
            ]
            for fut in as_completed(futures):
                results = fut.result()
                with session_scope(db_url) as session:
                    ledger_store.record(session, results, by_row)
                gone += _tally(report, results, by_row)
    finally:
        for c in connectors.values():
            c.close()
    return gone


def _tally(report: PushReport, results: Sequence[OpResult], ops: dict[int, PlannedOp]) -> int:
    gone = 0
    for res in results:
        op = ops[res.item]
        if res.ok:
            if res.kind is OpKind.CREATE:
                report.created += 1
            elif res.kind is OpKind.UPDATE:
                report.updated += 1
            else:
                report.deleted += 1
            continue
        if res.kind is OpKind.UPDATE and isinstance(res.error, NotFoundError):
            gone += 1
            continue
        report.failed += 1
        if res.error is not None and res.error.retryable:
            report.transient_failures += 1
        if len(report.errors) < 50:
            report.errors.append(f"{op.appointment_id} on {op.binding.calendar_id}: {res.error}")
    return gone
