"""Drift: events we believe are on a calendar that someone deleted or edited there by hand.

Found by reading each event back and comparing it with the ledger; repaired by marking the
ledger row so that the ordinary planner brings the calendar back in step (a DELETED row with a
wanted event is re-created under a new generation; a row whose content hash no longer matches
is updated). Events without our stamp are reported and never touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from connectors.base import CalendarConnector, RemoteEvent
from connectors.errors import ConnectorError, scrub
from fieldsync.domain import BindingView, LedgerState
from fieldsync.parameters import check_aware, check_days_ahead, check_platform
from fieldsync.store.tables import Appointment, CalendarBinding, SyncLedger, utcnow
from fieldsync.sync.executor import ConnectorFactory
from fieldsync.sync.ledger_store import binding_view, chunks


class Drift(StrEnum):
    NONE = "none"
    DELETED = "deleted by hand"
    EDITED = "edited by hand"
    NOT_OURS = "not ours"


@dataclass(frozen=True, slots=True)
class Watched:
    """A ledger row in state synced: an event we believe is on the calendar as we pushed it."""

    row_id: int
    appointment_id: str
    binding: BindingView
    remote_id: str
    etag: str | None
    content_hash: str | None
    start: datetime

    @property
    def pair(self) -> tuple[str, int]:
        return (self.appointment_id, self.binding.id)


@dataclass(frozen=True, slots=True)
class Check:
    watched: Watched
    drift: Drift | None  # None: not checked, `note` says why
    note: str = ""
    remote_etag: str | None = None


def window(days_ahead: int, now: datetime) -> tuple[datetime, datetime]:
    check_days_ahead(days_ahead)
    check_aware("as_of", now)
    return now, now + timedelta(days=days_ahead)


def select_synced(
    session: Session, *, lo: datetime, hi: datetime, platform: str | None = None
) -> list[Watched]:
    """Synced rows of appointments starting in [lo, hi), by start."""
    check_platform(platform)
    stmt = (
        select(SyncLedger, CalendarBinding, Appointment.start)
        .join(CalendarBinding, CalendarBinding.id == SyncLedger.binding_id)
        .join(Appointment, Appointment.id == SyncLedger.appointment_id)
        .where(SyncLedger.state == LedgerState.SYNCED, SyncLedger.remote_id.is_not(None))
        .where(Appointment.start >= lo, Appointment.start < hi)
        .order_by(Appointment.start, SyncLedger.appointment_id, SyncLedger.binding_id)
    )
    if platform is not None:
        stmt = stmt.where(SyncLedger.platform == platform)
    out: list[Watched] = []
    for row, binding, start in session.execute(stmt).tuples():
        assert row.remote_id is not None
        out.append(
            Watched(
                row.id, row.appointment_id, binding_view(binding), row.remote_id, row.etag,
                row.content_hash, start,
            )
        )  # fmt: skip
    return out


def classify(watched: Watched, remote: RemoteEvent | None) -> Drift:
    if remote is None:
        return Drift.DELETED
    if remote.job_id != watched.appointment_id:
        # Unstamped, or stamped for another job: not the event this row made. Hands off.
        return Drift.NOT_OURS
    if remote.event is None:
        # Ours, but changed beyond what the connector can decode (made all-day, say).
        return Drift.EDITED
    if remote.event.status == "cancelled":
        # Platforms that keep history show a deletion as a cancelled event.
        return Drift.DELETED
    if remote.event.content_hash() != watched.content_hash:
        return Drift.EDITED
    return Drift.NONE


def read_remote(watched: Sequence[Watched], connector_for: ConnectorFactory) -> list[Check]:
    """Read every watched event back. A platform that cannot read, or a calendar that cannot
    be reached, is reported per event and never stops the others."""
    by_binding: dict[int, list[Watched]] = defaultdict(list)
    for w in watched:
        by_binding[w.binding.id].append(w)
    connectors: dict[tuple[str, str | None], CalendarConnector | str] = {}
    for group in by_binding.values():
        b = group[0].binding
        key = (b.platform, b.credentials_block)
        if key in connectors:
            continue
        try:
            connectors[key] = connector_for(b)
        except Exception as exc:  # a broken block for one platform must not stop the rest
            connectors[key] = f"not checked: {scrub(str(exc))}"

    def run(group: list[Watched]) -> list[Check]:
        b = group[0].binding
        connector = connectors[(b.platform, b.credentials_block)]
        if isinstance(connector, str):
            return [Check(w, None, connector) for w in group]
        if not connector.supports_read:
            return [Check(w, None, f"{b.platform} cannot read events back") for w in group]
        checks = []
        for w in group:
            try:
                remote = connector.read(b.calendar_id, w.remote_id)
            except ConnectorError as exc:
                checks.append(Check(w, None, f"read failed: {scrub(str(exc))}"))
                continue
            etag = remote.ref.etag if remote is not None else None
            checks.append(Check(w, classify(w, remote), remote_etag=etag))
        return checks

    live = [c for c in connectors.values() if isinstance(c, CalendarConnector)]
    workers = max((c.max_parallel_calendars for c in live), default=1)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            results = list(pool.map(run, by_binding.values()))
    finally:
        for c in live:
            c.close()
    order = {w.row_id: i for i, w in enumerate(watched)}
    return sorted((c for part in results for c in part), key=lambda c: order[c.watched.row_id])


def mark(session: Session, checks: Sequence[Check]) -> list[Check]:
    """Mark drifted rows for the planner; returns the checks actually marked.

    Each update only applies while the row is exactly as it was read: a sync that wrote the
    row since then knows better, and marking a freshly re-created event DELETED would make a
    duplicate.
    """
    now = utcnow()
    marked: list[Check] = []
    for c in checks:
        w = c.watched
        if c.drift is Drift.DELETED:
            values: dict[str, object] = {
                "state": LedgerState.DELETED, "content_hash": None, "etag": None,
                "last_error": f"drift: deleted on {w.binding.platform} by hand; re-creating",
            }  # fmt: skip
        elif c.drift is Drift.EDITED:
            # The remote etag: our update then wins without a precondition round trip.
            values = {
                "content_hash": None, "etag": c.remote_etag,
                "last_error": f"drift: edited on {w.binding.platform} by hand; restoring",
            }  # fmt: skip
        else:
            continue
        same_hash = (
            SyncLedger.content_hash.is_(None)
            if w.content_hash is None
            else SyncLedger.content_hash == w.content_hash
        )
        stmt = (
            update(SyncLedger)
            .where(SyncLedger.id == w.row_id, SyncLedger.state == LedgerState.SYNCED)
            .where(SyncLedger.remote_id == w.remote_id, same_hash)
            .values(updated_at=now, **values)
        )
        if cast("CursorResult[Any]", session.execute(stmt)).rowcount:
            marked.append(c)
    return marked


@dataclass(frozen=True, slots=True)
class Repair:
    check: Check
    action: str
    ok: bool


def judge(
    check: Check,
    row: tuple[str, str | None, str | None] | None,
    *,
    dry_run: bool,
    marked: bool,
    held: Collection[str] = (),
    push_error: str | None = None,
) -> Repair:
    """The action column: what was (or, in a dry run, would be) done about one event.
    `row` is the ledger row's (state, content_hash, last_error) after the repair push;
    `push_error` why the push of the event's platform failed as a whole, if it did."""
    if check.drift is None:
        return Repair(check, f"skipped: {check.note}", False)
    if check.drift is Drift.NONE:
        return Repair(check, "none", True)
    if check.drift is Drift.NOT_OURS:
        return Repair(check, "left alone: the event does not carry our stamp for this job", True)
    verb = "re-create" if check.drift is Drift.DELETED else "restore"
    if dry_run:
        return Repair(check, f"would {verb} (dry run)", True)
    if not marked:
        return Repair(check, "left to the sync that changed the row meanwhile", True)
    state, content_hash, last_error = row or (None, None, None)
    if state == LedgerState.SYNCED and content_hash is not None:
        return Repair(check, "re-created" if verb == "re-create" else "restored", True)
    if state == LedgerState.DELETED and check.drift is Drift.EDITED:
        return Repair(check, "removed: the job no longer belongs on this calendar", True)
    if check.watched.appointment_id in held:
        return Repair(check, f"not {verb}d: held back by the conflict policy", False)
    if state == LedgerState.FAILED:
        return Repair(check, f"{verb} failed: {last_error or 'unknown error'}", False)
    if push_error is not None:
        return Repair(check, f"{verb} failed: {push_error}", False)
    if state == LedgerState.DELETED:
        return Repair(check, "not re-created: the job no longer belongs on this calendar", True)
    return Repair(check, f"not {verb}d yet; the next sync of this job will", False)


def ledger_after(
    session: Session, row_ids: Sequence[int]
) -> dict[int, tuple[str, str | None, str | None]]:
    out: dict[int, tuple[str, str | None, str | None]] = {}
    for part in chunks(list(row_ids)):
        stmt = select(
            SyncLedger.id, SyncLedger.state, SyncLedger.content_hash, SyncLedger.last_error
        ).where(SyncLedger.id.in_(part))
        out.update((i, (s, h, e)) for i, s, h, e in session.execute(stmt).tuples())
    return out
