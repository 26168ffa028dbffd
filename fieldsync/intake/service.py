"""The intake's one write path: store the request, apply it, queue its events, in one
transaction; or dead-letter it with its raw body. No web framework in here, so the rules are
tested as plain functions and the HTTP layer stays a thin translation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fieldsync.intake import outbox
from fieldsync.intake.apply import Applied, UnknownAppointment, apply_commands
from fieldsync.intake.commands import Command
from fieldsync.intake.sources.base import PayloadError, UpstreamUnavailable
from fieldsync.store.changes import InvalidChange
from fieldsync.store.db import session_scope, writer_slot
from fieldsync.store.tables import DeadLetter, IntakeRequest, utcnow
from fieldsync.store.writes import WriteError

log = logging.getLogger(__name__)

State = Literal["applied", "ignored", "received", "dead"]
# Domain refusals of a well-formed request: answered 4xx and dead-lettered for replay.
REFUSALS = (PayloadError, WriteError, InvalidChange, UnknownAppointment)


@dataclass
class Receipt:
    state: State
    appointment_ids: list[str] = field(default_factory=list)
    duplicate: bool = False
    created: bool = False
    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    double_booked_with: list[str] = field(default_factory=list)
    error: str = ""
    not_found: bool = False
    dead_letter_id: int | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """The request as received: what a dead letter keeps, so a replay sees the same input."""

    source: str
    event_id: str
    body: str
    content_type: str = "application/json"
    route: dict[str, str] = field(default_factory=dict)  # e.g. the appointment id in a path

    def dump(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "event_id": self.event_id,
                "content_type": self.content_type,
                "route": self.route,
                "body": self.body,
            }
        )

    @staticmethod
    def load(raw: str) -> Envelope:
        data = json.loads(raw)
        return Envelope(
            data["source"], data["event_id"], data["body"], data["content_type"], data["route"]
        )


class Intake:
    """Accepts requests into the store. `on_stored` is called after each commit that queued
    events (the relay's wake-up), so events leave within milliseconds, not a polling period."""

    def __init__(self, db_url: str | None = None, on_stored: Callable[[], None] | None = None):
        self.db_url = db_url
        self.on_stored = on_stored or (lambda: None)

    def _begin(self, session: Session) -> None:
        if session.get_bind().dialect.name == "sqlite":
            # Take the write lock up front: a read-then-write transaction that upgrades later
            # can fail with "database is locked" instead of waiting.
            session.execute(text("BEGIN IMMEDIATE"))

    def _writing(self) -> AbstractContextManager[object]:
        return writer_slot(self.db_url)

    def seen(self, source: str, event_id: str) -> Receipt | None:
        with session_scope(self.db_url) as session:
            return _receipt_of(session, source, event_id)

    def accept(
        self,
        envelope: Envelope,
        build: Callable[[], list[Command]],
        *,
        actor: str,
        check_first: bool = True,
    ) -> Receipt:
        """Idempotent on (source, event id): a redelivery answers what the first one did.
        `check_first=False` skips the early look-up when building the commands costs nothing
        (the write transaction checks again anyway); sources that fetch details keep it."""
        if check_first:
            earlier = self.seen(envelope.source, envelope.event_id)
            if earlier is not None:
                return earlier
        try:
            commands = build()
        except UpstreamUnavailable as exc:
            return self._store_unresolved(envelope, str(exc))
        except PayloadError as exc:
            return self._dead(envelope, str(exc), not_found=False)
        return self._apply(envelope, commands, actor=actor)

    def _apply(self, envelope: Envelope, commands: list[Command], *, actor: str) -> Receipt:
        for attempt in range(3):
            try:
                with self._writing(), session_scope(self.db_url) as session:
                    self._begin(session)
                    earlier = _receipt_of(session, envelope.source, envelope.event_id)
                    if earlier is not None:
                        return earlier
                    applied = apply_commands(session, commands, actor=actor)
                    state: State = "applied" if applied.events else "ignored"
                    _record(session, envelope, state, applied.appointment_ids, applied.notes)
                    outbox.write(session, applied.events)
                break
            except REFUSALS as exc:
                return self._dead(envelope, str(exc), not_found=isinstance(exc, UnknownAppointment))
            except IntegrityError:
                # A concurrent delivery of the same event (or booking) committed first; the
                # next attempt sees it and answers as it did.
                if attempt == 2:
                    raise
        if applied.events:
            self.on_stored()
        return _receipt(state, applied)

    def store_for_later(self, envelope: Envelope, why: str) -> Receipt:
        """Keep a verified request whose details come from the platform's API; the relay's
        resolve step applies it (`resolve_pending`)."""
        earlier = self.seen(envelope.source, envelope.event_id)
        if earlier is not None:
            return earlier
        return self._store_unresolved(envelope, why)

    def replay(self, letter_id: int, build_for: Callable[[Envelope], list[Command]]) -> Receipt:
        """Apply a dead letter again, after whatever refused it was fixed (a technician
        imported, a mapping corrected). Succeeds at most once; a refusal keeps the letter with
        the new reason."""
        with session_scope(self.db_url) as session:
            letter = session.get(DeadLetter, letter_id)
            if letter is None or not letter.source.startswith("intake:"):
                raise LookupError(f"no intake dead letter {letter_id}")
            if letter.replayed_at is not None:
                raise LookupError(f"dead letter {letter_id} was already replayed")
            envelope = Envelope.load(letter.payload)
        try:
            commands = build_for(envelope)
            with self._writing(), session_scope(self.db_url) as session:
                self._begin(session)
                applied = apply_commands(session, commands, actor=f"replay:{envelope.source}")
                state: State = "applied" if applied.events else "ignored"
                row = session.scalars(
                    select(IntakeRequest).where(
                        IntakeRequest.source == envelope.source,
                        IntakeRequest.event_id == envelope.event_id,
                    )
                ).one_or_none()
                if row is None:
                    _record(session, envelope, state, applied.appointment_ids, applied.notes)
                else:
                    row.state = state
                    row.appointment_ids = applied.appointment_ids
                    row.detail = "\n".join(applied.notes)
                    row.applied_at = utcnow()
                letter = session.get(DeadLetter, letter_id)
                assert letter is not None
                letter.replayed_at = utcnow()
                outbox.write(session, applied.events)
        except REFUSALS as exc:
            with session_scope(self.db_url) as session:
                letter = session.get(DeadLetter, letter_id)
                assert letter is not None
                letter.reason = f"replay refused: {exc}"
            return Receipt("dead", error=str(exc), not_found=isinstance(exc, UnknownAppointment))
        if applied.events:
            self.on_stored()
        return _receipt(state, applied)

    def reject(self, envelope: Envelope, why: str) -> Receipt:
        """Dead-letter a request from an authenticated sender whose body did not validate."""
        return self._dead(envelope, why, not_found=False)

    def _store_unresolved(self, envelope: Envelope, why: str) -> Receipt:
        with self._writing(), session_scope(self.db_url) as session:
            self._begin(session)
            earlier = _receipt_of(session, envelope.source, envelope.event_id)
            if earlier is not None:
                return earlier
            _record(session, envelope, "received", [], [why])
        self.on_stored()
        return Receipt("received", notes=[why])

    def _dead(self, envelope: Envelope, why: str, *, not_found: bool) -> Receipt:
        with self._writing(), session_scope(self.db_url) as session:
            self._begin(session)
            earlier = _receipt_of(session, envelope.source, envelope.event_id)
            if earlier is not None:
                return earlier
            letter = DeadLetter(
                source=f"intake:{envelope.source}",
                kind="webhook",
                row_number=None,
                payload=envelope.dump(),
                reason=why,
            )
            session.add(letter)
            _record(session, envelope, "dead", [], [why])
            session.flush()
            letter_id = letter.id
        log.info("dead-lettered %s event %s: %s", envelope.source, envelope.event_id, why)
        return Receipt("dead", error=why, not_found=not_found, dead_letter_id=letter_id)

    def resolve_pending(
        self, build_for: Callable[[Envelope], list[Command]], *, limit: int = 100
    ) -> int:
        """Retry requests stored while their details could not be fetched. Returns how many
        left the `received` state."""
        with session_scope(self.db_url) as session:
            rows = session.scalars(
                select(IntakeRequest)
                .where(IntakeRequest.state == "received")
                .order_by(IntakeRequest.id)
                .limit(limit)
            ).all()
            pending = [(r.id, Envelope(r.source, r.event_id, r.body, r.content_type)) for r in rows]
        done = 0
        for row_id, envelope in pending:
            try:
                commands = build_for(envelope)
            except UpstreamUnavailable as exc:
                _bump(self.db_url, row_id, str(exc))
                continue
            except PayloadError as exc:
                self._settle_dead(row_id, envelope, str(exc))
                done += 1
                continue
            self._settle(row_id, envelope, commands)
            done += 1
        return done

    def _settle(self, row_id: int, envelope: Envelope, commands: list[Command]) -> None:
        try:
            with self._writing(), session_scope(self.db_url) as session:
                self._begin(session)
                row = session.get(IntakeRequest, row_id, with_for_update=True)
                if row is None or row.state != "received":
                    return
                applied = apply_commands(session, commands, actor=envelope.source)
                row.state = "applied" if applied.events else "ignored"
                row.appointment_ids = applied.appointment_ids
                row.detail = "\n".join(applied.notes)
                row.applied_at = utcnow()
                outbox.write(session, applied.events)
        except REFUSALS as exc:
            self._settle_dead(row_id, envelope, str(exc))
            return
        self.on_stored()

    def _settle_dead(self, row_id: int, envelope: Envelope, why: str) -> None:
        with self._writing(), session_scope(self.db_url) as session:
            self._begin(session)
            row = session.get(IntakeRequest, row_id, with_for_update=True)
            if row is None or row.state != "received":
                return
            row.state = "dead"
            row.detail = why
            session.add(
                DeadLetter(
                    source=f"intake:{envelope.source}",
                    kind="webhook",
                    payload=envelope.dump(),
                    reason=why,
                )
            )


def _bump(db_url: str | None, row_id: int, why: str) -> None:
    with session_scope(db_url) as session:
        row = session.get(IntakeRequest, row_id)
        if row is not None:
            row.attempts += 1
            row.detail = why


def _record(
    session: Session, envelope: Envelope, state: State, ids: list[str], notes: list[str]
) -> None:
    session.add(
        IntakeRequest(
            source=envelope.source,
            event_id=envelope.event_id,
            state=state,
            content_type=envelope.content_type,
            body=envelope.body,
            appointment_ids=ids,
            detail="\n".join(notes),
            attempts=1,
            applied_at=utcnow() if state in ("applied", "ignored") else None,
        )
    )
    session.flush()


def _receipt_of(session: Session, source: str, event_id: str) -> Receipt | None:
    row = session.scalars(
        select(IntakeRequest).where(
            IntakeRequest.source == source, IntakeRequest.event_id == event_id
        )
    ).one_or_none()
    if row is None:
        return None
    state: State = row.state  # type: ignore[assignment]
    error = row.detail if state == "dead" else ""
    return Receipt(
        state, list(row.appointment_ids), duplicate=True, notes=[row.detail], error=error
    )


def _receipt(state: State, applied: Applied) -> Receipt:
    return Receipt(
        state,
        applied.appointment_ids,
        created=applied.created,
        events=[e.event for e in applied.events],
        notes=applied.notes,
        double_booked_with=applied.double_booked_with,
    )
