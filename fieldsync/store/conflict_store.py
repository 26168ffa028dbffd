"""Persist conflict findings so each one alerts once, and again only when it changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from fieldsync.conflicts import ConflictFinding
from fieldsync.store.tables import Conflict, utcnow
from fieldsync.sync.ledger_store import chunks


def record_findings(
    session: Session, findings: Sequence[ConflictFinding], checked_ids: Iterable[str]
) -> list[ConflictFinding]:
    """Store findings; return the ones that still owe an alert: new, back after being resolved,
    or whose earlier alert could not be sent. Open conflicts among the checked appointments
    not found again become resolved. `mark_alerted` records a delivered alert."""
    now = utcnow()
    prints = {f.fingerprint: f for f in findings}
    # Core statements, not ORM objects: a shift start can carry thousands of findings.
    known: dict[str, tuple[int, datetime | None, datetime | None]] = {}
    for part in chunks(list(prints)):
        stmt = select(
            Conflict.fingerprint, Conflict.id, Conflict.resolved_at, Conflict.alerted_at
        ).where(Conflict.fingerprint.in_(part))
        for fingerprint, conflict_id, resolved_at, alerted_at in session.execute(stmt).tuples():
            known[fingerprint] = (conflict_id, resolved_at, alerted_at)

    new = [f for fp, f in prints.items() if fp not in known]
    returned = [f for fp, f in prints.items() if fp in known and known[fp][1] is not None]
    unsent = [
        f for fp, f in prints.items()
        if fp in known and known[fp][1] is None and known[fp][2] is None
    ]  # fmt: skip
    back = [known[f.fingerprint][0] for f in returned]
    if new:
        session.execute(
            insert(Conflict),
            [
                {"fingerprint": f.fingerprint, "technician_id": f.technician_id,
                 "kind": f.kind, "severity": f.severity,
                 "appointment_ids": list(f.appointment_ids), "detail": f.detail,
                 "detected_at": now, "alerted_at": None}
                for f in new
            ],
        )  # fmt: skip
    if back:
        session.execute(
            update(Conflict), [{"id": i, "resolved_at": None, "alerted_at": None} for i in back]
        )

    checked = set(checked_ids)
    open_now = select(Conflict.id, Conflict.fingerprint, Conflict.appointment_ids).where(
        Conflict.resolved_at.is_(None)
    )
    gone = [
        {"id": conflict_id, "resolved_at": now}
        for conflict_id, fingerprint, ids in session.execute(open_now).tuples()
        if fingerprint not in prints and checked.intersection(ids)
    ]
    if gone:
        session.execute(update(Conflict), gone)
    return new + returned + unsent


def mark_alerted(session: Session, fingerprints: Iterable[str]) -> None:
    wanted = list(fingerprints)
    for part in chunks(wanted):
        session.execute(
            update(Conflict).where(Conflict.fingerprint.in_(part)).values(alerted_at=utcnow())
        )
