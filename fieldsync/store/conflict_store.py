"""Persist conflict findings so each one alerts once, and again only when it changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fieldsync.conflicts import ConflictFinding
from fieldsync.store.tables import Conflict, utcnow
from fieldsync.sync.ledger_store import chunks


def record_findings(
    session: Session, findings: Sequence[ConflictFinding], checked_ids: Iterable[str]
) -> list[ConflictFinding]:
    """Store findings; return the ones not seen before (those alert). Open conflicts among the
    checked appointments that were not found again are marked resolved."""
    now = utcnow()
    prints = {f.fingerprint: f for f in findings}
    known: dict[str, Conflict] = {}
    for part in chunks(list(prints)):
        for c in session.scalars(select(Conflict).where(Conflict.fingerprint.in_(part))):
            known[c.fingerprint] = c
    new: list[ConflictFinding] = []
    for fp, f in prints.items():
        row = known.get(fp)
        if row is None:
            session.add(
                Conflict(
                    fingerprint=fp,
                    technician_id=f.technician_id,
                    kind=f.kind,
                    severity=f.severity,
                    appointment_ids=list(f.appointment_ids),
                    detail=f.detail,
                    detected_at=now,
                    alerted_at=now,
                )
            )
            new.append(f)
        elif row.resolved_at is not None:
            row.resolved_at = None  # it came back: alert again
            row.alerted_at = now
            new.append(f)
    checked = set(checked_ids)
    open_rows = session.scalars(select(Conflict).where(Conflict.resolved_at.is_(None)))
    for row in open_rows:
        if row.fingerprint not in prints and checked.intersection(row.appointment_ids):
            row.resolved_at = now
    session.flush()
    return new


def open_conflicts(session: Session) -> list[Conflict]:
    return list(
        session.scalars(
            select(Conflict).where(Conflict.resolved_at.is_(None)).order_by(Conflict.id)
        )
    )
