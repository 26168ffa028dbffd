"""Ledger reads and writes. Every write happens in its own short transaction so that what is
recorded survives a crash of whatever comes next."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from connectors.base import OpResult, RemoteRef
from connectors.errors import NotFoundError, scrub
from fieldsync.domain import BindingView, LedgerState, OpKind
from fieldsync.store.tables import CalendarBinding, SyncLedger, utcnow
from fieldsync.sync.model import LedgerRow, PlannedOp

T = TypeVar("T")
CHUNK = 900  # stays below every backend's bound-parameter limit


def chunks(seq: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def load_rows(
    session: Session, appointment_ids: Sequence[str], platform: str | None = None
) -> list[LedgerRow]:
    # Plain column tuples, not ORM objects: a shift start reads tens of thousands of rows.
    columns = [getattr(SyncLedger, f) for f in LedgerRow.__dataclass_fields__]
    rows: list[LedgerRow] = []
    for part in chunks(appointment_ids):
        stmt = select(*columns).where(SyncLedger.appointment_id.in_(part))
        if platform is not None:
            stmt = stmt.where(SyncLedger.platform == platform)
        rows.extend(LedgerRow(*r) for r in session.execute(stmt).tuples())
    return rows


def binding_view(b: CalendarBinding) -> BindingView:
    return BindingView(b.id, b.technician_id, b.platform, b.calendar_id, b.credentials_block)


def load_bindings(session: Session, ids: Iterable[int]) -> dict[int, BindingView]:
    wanted = sorted(set(ids))
    out: dict[int, BindingView] = {}
    for part in chunks(wanted):
        for b in session.scalars(select(CalendarBinding).where(CalendarBinding.id.in_(part))):
            out[b.id] = binding_view(b)
    return out


def live_counts(session: Session, binding_ids: Iterable[int]) -> dict[int, int]:
    """Events we believe exist per binding: the denominator of the mass-deletion guard."""
    wanted = sorted(set(binding_ids))
    out: dict[int, int] = {}
    for part in chunks(wanted):
        stmt = (
            select(SyncLedger.binding_id, func.count())
            .where(SyncLedger.binding_id.in_(part), SyncLedger.state != LedgerState.DELETED)
            .group_by(SyncLedger.binding_id)
        )
        out.update((bid, n) for bid, n in session.execute(stmt).tuples())
    return out


def reserve(session: Session, ops: Sequence[PlannedOp]) -> dict[int, PlannedOp]:
    """Fix each op's idempotency key and mark it pending *before* any remote call.

    Returns the ops by ledger row id. Committed by the caller before pushing.
    """
    now = utcnow()
    new = [op for op in ops if op.row_id is None]
    if new:
        session.execute(
            insert(SyncLedger),
            [
                {
                    "appointment_id": op.appointment_id,
                    "binding_id": op.binding.id,
                    "platform": op.binding.platform,
                    "generation": op.generation,
                    "idempotency_key": op.key,
                    "state": LedgerState.PENDING,
                    "pending_op": op.kind.value,
                    "attempts": 1,
                    "updated_at": now,
                }
                for op in new
            ],
        )
    existing = [op for op in ops if op.row_id is not None]
    if existing:
        session.execute(
            update(SyncLedger),
            [
                {
                    "id": op.row_id,
                    "generation": op.generation,
                    "idempotency_key": op.key,
                    "state": LedgerState.PENDING,
                    "pending_op": op.kind.value,
                    "attempts": op.attempts + 1,
                    "updated_at": now,
                    # A new generation is a new remote event: forget the old identity.
                    **(
                        {"remote_id": None, "etag": None, "content_hash": None}
                        if op.kind is OpKind.CREATE
                        else {}
                    ),
                }
                for op in existing
            ],
        )
    keys = [op.key for op in ops]
    ids: dict[str, int] = {}
    for part in chunks(keys):
        stmt = select(SyncLedger.idempotency_key, SyncLedger.id).where(
            SyncLedger.idempotency_key.in_(part)
        )
        ids.update((key, row_id) for key, row_id in session.execute(stmt).tuples())
    return {ids[op.key]: op for op in ops}


def record(
    session: Session,
    results: Sequence[OpResult],
    ops: dict[int, PlannedOp],
) -> None:
    """Write each outcome back to its ledger row. Error texts are scrubbed once more here:
    connectors must keep secrets out of them, and the ledger is shown to analysts."""
    now = utcnow()
    values: list[dict[str, Any]] = []

    def gone(item: int, error: str | None) -> dict[str, Any]:
        return {
            "id": item,
            "pushed_version": ops[item].version,
            "state": LedgerState.DELETED,
            "pending_op": None,
            "content_hash": None,
            "etag": None,
            "last_error": error,
            "updated_at": now,
        }

    for res in results:
        op = ops[res.item]
        if res.ok and op.kind is OpKind.DELETE:
            values.append(gone(res.item, None))
        elif res.ok:
            ref = res.ref or RemoteRef("")
            assert op.event is not None
            values.append(
                {"id": res.item, "state": LedgerState.SYNCED, "pending_op": None,
                 "remote_id": ref.remote_id, "etag": ref.etag,
                 "content_hash": op.event.content_hash(), "pushed_version": op.version,
                 "last_error": None, "updated_at": now}
            )  # fmt: skip
        elif op.kind is OpKind.UPDATE and isinstance(res.error, NotFoundError):
            # Deleted by hand on the platform: the next plan re-creates it (new generation).
            values.append(gone(res.item, scrub(str(res.error))))
        else:
            values.append(
                {"id": res.item, "state": LedgerState.FAILED, "updated_at": now,
                 "last_error": scrub(str(res.error))[:2000]}
            )  # fmt: skip
    if values:
        session.execute(update(SyncLedger), values)
