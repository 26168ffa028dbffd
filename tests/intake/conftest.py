"""An intake app on a fresh store (SQLite and PostgreSQL), with a technician, an API key and
a status token; events are kept in the outbox (no relay) so tests can read them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time

import pytest
from fastapi.testclient import TestClient

from fieldsync.intake import tokens
from fieldsync.intake.app import create_app
from fieldsync.store.db import session_scope
from fieldsync.store.tables import CalendarBinding, Technician


@dataclass
class Api:
    client: TestClient
    db: str
    key: str
    status_token: str
    feed_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def seed(db: str) -> tuple[str, str, str]:
    with session_scope(db) as session:
        for tid, email in (("T1", "ana@example.com"), ("T2", "ben@example.com")):
            session.add(
                Technician(
                    id=tid, name=tid, email=email, timezone="America/Chicago",
                    shift_start=time(7), shift_end=time(18), work_days=[0, 1, 2, 3, 4],
                    skills=[], region="dfw",
                )
            )  # fmt: skip
        session.flush()
        session.add(CalendarBinding(technician_id="T1", platform="ics", calendar_id="t1"))
        return (
            tokens.issue(session, "api", "portal"),
            tokens.issue(session, "status", "T1"),
            tokens.issue(session, "feed", "T1"),
        )


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    key, status, feed = seed(db_url)
    with TestClient(create_app(db_url=db_url)) as client:
        yield Api(client, db_url, key, status, feed)


def booking(n: int = 1, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "source": "portal", "source_id": f"P-{n}", "technician_id": "T1",
        "job_type": "AC repair", "start": "2026-12-01T09:00:00-06:00",
        "duration_minutes": 90, "customer_name": "Dana", "address": "1 Elm St, Dallas",
    }  # fmt: skip
    body.update(overrides)
    return body
