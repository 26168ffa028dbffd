"""The outbox relay: sends stored events to Prefect's events API, oldest first, and marks
each batch delivered only after Prefect acknowledged it (HTTP 204).

At-least-once: a crash between Prefect's answer and the mark sends the batch again, and
Prefect's trigger service drops events whose id it has already seen. Several relays (one per
intake replica) may run against PostgreSQL: each claims its batch with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from connectors.errors import scrub
from fieldsync.intake.outbox import to_prefect
from fieldsync.store.db import session_scope, writer_slot
from fieldsync.store.tables import OutboxEvent, utcnow

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def send(self, events: Sequence[dict[str, Any]]) -> None:
        """Deliver or raise; returning means the receiver has them."""


class SinkUnavailable(RuntimeError):
    pass


class PrefectEventsSink:
    """POST /api/events on the Prefect server, the same endpoint Prefect's own clients use."""

    def __init__(
        self, api_url: str, *, authorization: str | None = None, timeout: float = 5.0
    ) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        self._client = httpx.Client(
            base_url=api_url.rstrip("/") + "/", headers=headers, timeout=timeout
        )

    @classmethod
    def from_prefect_settings(cls) -> PrefectEventsSink:
        """The API and credentials Prefect itself is configured with (PREFECT_API_URL, and
        PREFECT_API_KEY or PREFECT_API_AUTH_STRING), read the way Prefect's client reads them."""
        from prefect.settings import get_current_settings

        api = get_current_settings().api
        if not api.url:
            raise SinkUnavailable("PREFECT_API_URL is not set: the relay has nowhere to send")
        authorization = None
        if api.key:
            authorization = f"Bearer {api.key.get_secret_value()}"
        elif api.auth_string:
            token = base64.b64encode(api.auth_string.get_secret_value().encode()).decode()
            authorization = f"Basic {token}"
        return cls(api.url, authorization=authorization)

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        try:
            response = self._client.post("events", json=list(events))
        except httpx.HTTPError as exc:
            raise SinkUnavailable(f"Prefect API unreachable: {type(exc).__name__}") from exc
        if response.status_code != 204:
            raise SinkUnavailable(
                f"Prefect API answered {response.status_code}: {scrub(response.text[:300])}"
            )

    def close(self) -> None:
        self._client.close()


def pending_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))
        )
        or 0
    )


def deliver_pending(sink: EventSink, *, db_url: str | None = None, batch: int = 200) -> int:
    """Send everything waiting, batch by batch. Returns how many were delivered; raises
    SinkUnavailable (after recording the failure) when Prefect does not take them."""
    delivered = 0
    while True:
        with session_scope(db_url) as session:
            if session.get_bind().dialect.name == "postgresql":
                sent = _claim_and_send(session, sink, batch)
            else:
                sent = _send_then_mark(session, sink, batch, db_url)
        if not sent:
            return delivered
        delivered += sent


def _pending(batch: int) -> Select[OutboxEvent]:
    return (
        select(OutboxEvent)
        .where(OutboxEvent.delivered_at.is_(None))
        .order_by(OutboxEvent.occurred, OutboxEvent.id)
        .limit(batch)
    )


def _claim_and_send(session: Session, sink: EventSink, batch: int) -> int:
    # Locked through the send: another relay skips these rows instead of resending them.
    rows = session.scalars(_pending(batch).with_for_update(skip_locked=True)).all()
    if not rows:
        return 0
    try:
        sink.send([to_prefect(r) for r in rows])
    except SinkUnavailable as exc:
        for r in rows:
            r.attempts += 1
            r.last_error = str(exc)[:500]
        session.commit()
        raise
    now = utcnow()
    for r in rows:
        r.delivered_at = now
        r.attempts += 1
        r.last_error = None
    return len(rows)


def _send_then_mark(session: Session, sink: EventSink, batch: int, db_url: str | None) -> int:
    # SQLite: no transaction stays open across the network call (it would hold up the intake's
    # writers, or fail on upgrade with a stale snapshot); the marks go in a fresh transaction.
    rows = session.scalars(_pending(batch)).all()
    session.commit()
    if not rows:
        return 0
    ids = [r.id for r in rows]
    try:
        sink.send([to_prefect(r) for r in rows])
    except SinkUnavailable as exc:
        with writer_slot(db_url), session_scope(db_url) as marks:
            marks.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids))
                .values(attempts=OutboxEvent.attempts + 1, last_error=str(exc)[:500])
            )
        raise
    with writer_slot(db_url), session_scope(db_url) as marks:
        marks.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(ids))
            .values(delivered_at=utcnow(), attempts=OutboxEvent.attempts + 1, last_error=None)
        )
    return len(rows)


class Relay:
    """A background thread: wakes when the intake stores something, and at least every
    `interval` seconds; backs off while Prefect is down. `resolve` retries requests whose
    details could not be fetched yet (Acuity down, say)."""

    def __init__(
        self,
        sink: EventSink,
        *,
        db_url: str | None = None,
        interval: float = 2.0,
        max_backoff: float = 30.0,
        resolve: Callable[[], int] | None = None,
        linger: float = 0.05,
    ) -> None:
        self.sink = sink
        self.db_url = db_url
        self.interval = interval
        self.max_backoff = max_backoff
        self.resolve = resolve
        # After a wake-up, wait this long so a burst of requests leaves as one batch.
        self.linger = linger
        self.delivered = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.is_set():
            if self._wake.wait(wait) and not self._stop.is_set():
                self._stop.wait(self.linger)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if self.resolve is not None:
                    self.resolve()
                self.delivered += deliver_pending(self.sink, db_url=self.db_url)
                self.last_error = ""
                wait = self.interval
            except SinkUnavailable as exc:
                if self.last_error != str(exc):
                    log.warning("outbox relay: %s; events wait in the store", exc)
                self.last_error = str(exc)
                wait = min(self.max_backoff, max(wait * 2, 0.5))
            except Exception:
                log.exception("outbox relay round failed; retrying")
                wait = min(self.max_backoff, max(wait * 2, 0.5))
        # A last attempt, so a clean shutdown leaves nothing behind that could go now.
        try:
            self.delivered += deliver_pending(self.sink, db_url=self.db_url)
        except Exception as exc:  # shutdown must not raise
            log.info("outbox relay stopped with events still waiting: %s", exc)
