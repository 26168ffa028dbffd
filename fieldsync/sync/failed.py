"""Ledger items still failed after their push, for the analysts' retry, and what became of them.

The retry pushes exactly these (appointment, binding) pairs; everything else about the same
appointments waits for the normal sync flows, so a retry never smuggles out unrelated changes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fieldsync.domain import LedgerState
from fieldsync.parameters import BadRequest, check_aware, check_platform
from fieldsync.store.reads import NotFoundInStore
from fieldsync.store.tables import Appointment, CalendarBinding, SyncLedger, Technician
from fieldsync.sync.ledger_store import chunks


@dataclass(frozen=True, slots=True)
class FailedFilter:
    platform: str | None = None
    technician_id: str | None = None  # who owns the calendar binding, not who has the job now
    start: datetime | None = None  # appointment start, inclusive
    end: datetime | None = None  # appointment start, exclusive


@dataclass(frozen=True, slots=True)
class FailedItem:
    row_id: int
    appointment_id: str
    binding_id: int
    technician_id: str
    platform: str
    calendar_id: str
    start: datetime
    last_error: str

    @property
    def pair(self) -> tuple[str, int]:
        return (self.appointment_id, self.binding_id)


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    item: FailedItem
    outcome: str
    error: str
    ok: bool


def check_filter(f: FailedFilter) -> None:
    check_platform(f.platform)
    check_aware("start", f.start)
    check_aware("end", f.end)
    if f.start is not None and f.end is not None and f.end <= f.start:
        raise BadRequest(
            f"end {f.end.isoformat()} is not after start {f.start.isoformat()}; "
            "the range is [start, end)"
        )


def select_failed(session: Session, f: FailedFilter) -> list[FailedItem]:
    """Every ledger row in state failed matching the filter, by appointment start."""
    check_filter(f)
    if f.technician_id is not None and session.get(Technician, f.technician_id) is None:
        raise NotFoundInStore(f"no technician with id {f.technician_id}")
    stmt = (
        select(
            SyncLedger.id,
            SyncLedger.appointment_id,
            SyncLedger.binding_id,
            CalendarBinding.technician_id,
            SyncLedger.platform,
            CalendarBinding.calendar_id,
            Appointment.start,
            SyncLedger.last_error,
        )
        .join(CalendarBinding, CalendarBinding.id == SyncLedger.binding_id)
        .join(Appointment, Appointment.id == SyncLedger.appointment_id)
        .where(SyncLedger.state == LedgerState.FAILED)
        .order_by(Appointment.start, SyncLedger.appointment_id, SyncLedger.binding_id)
    )
    if f.platform is not None:
        stmt = stmt.where(SyncLedger.platform == f.platform)
    if f.technician_id is not None:
        stmt = stmt.where(CalendarBinding.technician_id == f.technician_id)
    if f.start is not None:
        stmt = stmt.where(Appointment.start >= f.start)
    if f.end is not None:
        stmt = stmt.where(Appointment.start < f.end)
    return [
        FailedItem(row_id, appt, binding, tech, platform, calendar, start, error or "")
        for row_id, appt, binding, tech, platform, calendar, start, error in session.execute(
            stmt
        ).tuples()
    ]


def classify(
    item: FailedItem,
    state: str | None,
    last_error: str | None,
    held: Collection[str] = (),
    broken: Mapping[str, str] | None = None,
) -> RetryOutcome:
    """What the retry did to one item, judged from its ledger row afterwards. `broken`: per
    platform whose push failed as a whole (so no item of it was tried), why."""
    error = last_error or ""
    if state == LedgerState.SYNCED:
        return RetryOutcome(item, "pushed", "", True)
    if state == LedgerState.DELETED:
        # The failed write was a removal (the job was canceled or moved away), now done.
        return RetryOutcome(item, "removed", "", True)
    if state == LedgerState.PENDING:
        return RetryOutcome(item, "outcome unknown (interrupted); run again", error, False)
    if item.appointment_id in held:
        return RetryOutcome(item, "held back by the conflict policy", error, False)
    if broken and item.platform in broken:
        return RetryOutcome(item, "not tried: the platform's push failed", broken[item.platform],
                            False)  # fmt: skip
    return RetryOutcome(item, "still failed", error, False)


def outcomes(
    session: Session,
    items: Sequence[FailedItem],
    held: Collection[str] = (),
    broken: Mapping[str, str] | None = None,
) -> list[RetryOutcome]:
    states: dict[int, tuple[str | None, str | None]] = {}
    for part in chunks([i.row_id for i in items]):
        stmt = select(SyncLedger.id, SyncLedger.state, SyncLedger.last_error).where(
            SyncLedger.id.in_(part)
        )
        states.update((row_id, (state, err)) for row_id, state, err in session.execute(stmt))
    out = []
    for i in items:
        state, error = states.get(i.row_id, (None, i.last_error))
        out.append(classify(i, state, error, held, broken))
    return out
