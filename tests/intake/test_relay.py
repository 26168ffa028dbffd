"""The outbox relay: nothing accepted is lost while Prefect is away, nothing is sent twice
once it answered, and ids stay the same across resends so Prefect can drop duplicates."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from fieldsync.intake.relay import Relay, SinkUnavailable, deliver_pending
from fieldsync.store.db import session_scope
from fieldsync.store.tables import OutboxEvent
from tests.intake.conftest import Api, booking


class FlakySink:
    def __init__(self) -> None:
        self.up = False
        self.received: list[dict[str, Any]] = []
        self.attempts = 0

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        self.attempts += 1
        if not self.up:
            raise SinkUnavailable("Prefect API unreachable: ConnectError")
        self.received.extend(events)


def waiting(db: str) -> int:
    with session_scope(db) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.delivered_at.is_(None))
            )
            or 0
        )


def test_events_wait_while_prefect_is_down_and_go_once_it_is_back(api: Api) -> None:
    for n in range(3):
        api.client.post("/v1/appointments", json=booking(n, start=f"2026-12-0{n + 1}T09:00:00Z"),
                        headers=api.auth)  # fmt: skip
    sink = FlakySink()
    with pytest.raises(SinkUnavailable):
        deliver_pending(sink, db_url=api.db)
    assert waiting(api.db) == 3
    with session_scope(api.db) as session:
        assert all(r.last_error for r in session.scalars(select(OutboxEvent)))

    sink.up = True
    assert deliver_pending(sink, db_url=api.db) == 3
    assert waiting(api.db) == 0
    assert deliver_pending(sink, db_url=api.db) == 0  # delivered ones are never resent
    sent = sink.received
    assert [e["event"] for e in sent] == ["fieldsync.appointment.booked"] * 3
    assert len({e["id"] for e in sent}) == 3
    assert all(e["resource"]["prefect.resource.id"].startswith("fieldsync.appointment.J-")
               for e in sent)  # fmt: skip
    assert all(e["payload"]["technician_id"] == "T1" for e in sent)


def test_relay_thread_wakes_on_store_and_backs_off_while_down(api: Api) -> None:
    sink = FlakySink()
    relay = Relay(sink, db_url=api.db, interval=30, max_backoff=0.2)
    relay.start()
    try:
        api.client.post("/v1/appointments", json=booking(), headers=api.auth)
        relay.wake()
        deadline = time.monotonic() + 5
        while sink.attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.attempts >= 2 and waiting(api.db) == 1  # retried, still waiting
        sink.up = True
        deadline = time.monotonic() + 5
        while waiting(api.db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting(api.db) == 0 and len(sink.received) == 1
    finally:
        relay.stop()
