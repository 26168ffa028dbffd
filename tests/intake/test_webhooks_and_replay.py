"""Webhooks through the app (stored before any platform call, unknown jobs kept, not
bounced) and replaying dead letters after the cause is fixed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time as clock
from collections.abc import Iterator
from datetime import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fieldsync.intake.app import create_app
from fieldsync.intake.directory import EmailDirectory
from fieldsync.intake.server import commands_for, replay
from fieldsync.intake.service import Intake
from fieldsync.intake.sources.acuity import AcuitySource
from fieldsync.intake.sources.base import WebhookSource
from fieldsync.intake.sources.calendly import CalendlySource
from fieldsync.store.db import session_scope
from fieldsync.store.tables import (
    Appointment,
    DeadLetter,
    IntakeRequest,
    OutboxEvent,
    Technician,
)
from tests.fakes.acuity import FakeAcuity
from tests.fakes.loopback_api import Fault
from tests.intake.conftest import Api, booking
from tests.intake_sources.helpers import PAYLOADS, payload

USER_ID, API_KEY, CALENDAR = "4321", "acuity-test-key", 7


@pytest.fixture
def acuity() -> Iterator[FakeAcuity]:
    api = FakeAcuity(USER_ID, API_KEY)
    api.add_calendar(CALENDAR, "Carla", "carla@example.com", "America/Denver")
    with api.running():
        yield api


def _events(db: str) -> list[str]:
    with session_scope(db) as session:
        return list(session.scalars(select(OutboxEvent.event)))


def test_acuity_notice_is_stored_at_once_and_applied_when_acuity_answers(
    api: Api, acuity: FakeAcuity
) -> None:
    with session_scope(api.db) as session:
        session.add(Technician(id="T7", name="Carla", email="carla@example.com",
                               timezone="America/Denver", shift_start=time(7),
                               shift_end=time(17)))  # fmt: skip
    appointment = acuity.book(payload("acuity_appointment.json"), calendarID=CALENDAR)
    source = AcuitySource(USER_ID, API_KEY, base_url=acuity.url, timeout=0.5, max_retries=1)
    sources: dict[str, WebhookSource] = {"acuity": source}
    body = acuity.webhook("scheduled", appointment)
    signature = base64.b64encode(hmac.new(API_KEY.encode(), body, hashlib.sha256).digest())
    acuity.inject(Fault(status=503, path="/api/v1/appointments/", times=10))
    with TestClient(create_app(db_url=api.db, sources=sources)) as client:
        answer = client.post("/webhooks/acuity", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Acuity-Signature": signature.decode()})  # fmt: skip
    assert answer.status_code == 202 and answer.json()["state"] == "received"

    intake = Intake(api.db)
    directory = EmailDirectory(api.db)
    # Acuity still down: the request stays stored, nothing is lost or applied.
    assert intake.resolve_pending(lambda e: commands_for(e, sources, directory)) == 0
    assert _events(api.db) == []
    acuity.clear_faults()
    assert intake.resolve_pending(lambda e: commands_for(e, sources, directory)) == 1
    assert _events(api.db) == ["fieldsync.appointment.booked"]
    with session_scope(api.db) as session:
        [job] = session.scalars(select(Appointment)).all()
        assert job.technician_id == "T7" and job.source == "acuity"
    source.close()


def test_calendly_cancel_for_an_unknown_booking_is_kept_not_bounced(api: Api) -> None:
    key = "calendly-key"
    body = (PAYLOADS / "calendly_invitee_canceled.json").read_bytes()
    t = str(int(clock.time()))
    v1 = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    with TestClient(create_app(db_url=api.db, sources={"calendly": CalendlySource(key)})) as c:
        answer = c.post("/webhooks/calendly", content=body, headers={
            "Content-Type": "application/json",
            "Calendly-Webhook-Signature": f"t={t},v1={v1}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert "dead letters" in answer.json()["notes"][0]
    with session_scope(api.db) as session:
        assert session.scalars(select(IntakeRequest.state)).all() == ["dead"]
        [letter] = session.scalars(select(DeadLetter)).all()
        assert json.loads(letter.payload)["body"] == body.decode()


def test_a_dead_letter_replays_once_after_the_fix(api: Api) -> None:
    refused = api.client.post("/v1/appointments", json=booking(technician_id="T9"),
                              headers=api.auth)  # fmt: skip
    assert refused.status_code == 422
    with session_scope(api.db) as session:
        [letter_id] = session.scalars(select(DeadLetter.id)).all()
    [(_, still)] = replay([letter_id], api.db)
    assert still.state == "dead" and "T9" in still.error

    with session_scope(api.db) as session:
        session.add(Technician(id="T9", name="New hire", timezone="America/Chicago",
                               shift_start=time(7), shift_end=time(17)))  # fmt: skip
    [(_, done)] = replay([letter_id], api.db)
    assert done.state == "applied" and _events(api.db) == ["fieldsync.appointment.booked"]
    with session_scope(api.db) as session:
        assert session.scalars(select(IntakeRequest.state)).all() == ["applied"]
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None and letter.replayed_at is not None
    with pytest.raises(LookupError, match="already replayed"):
        replay([letter_id], api.db)


def _calendly_post(client: TestClient, key: str, body: bytes) -> Any:
    t = str(int(clock.time()))
    v1 = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "Calendly-Webhook-Signature": f"t={t},v1={v1}"}
    return client.post("/webhooks/calendly", content=body, headers=headers)


def test_a_redelivered_calendly_webhook_changes_nothing(api: Api) -> None:
    with session_scope(api.db) as session:
        session.add(Technician(id="TA", name="Alice", email="alice.tech@acme-plumbing.example",
                               timezone="Europe/London", shift_start=time(7),
                               shift_end=time(18)))  # fmt: skip
    key = "calendly-key"
    body = (PAYLOADS / "calendly_invitee_created.json").read_bytes()
    with TestClient(create_app(db_url=api.db, sources={"calendly": CalendlySource(key)})) as c:
        first = _calendly_post(c, key, body)
        again = _calendly_post(c, key, body)
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert _events(api.db) == ["fieldsync.appointment.booked"]


def test_concurrent_deliveries_of_one_request_store_it_once(api: Api) -> None:
    """Two intake replicas receiving the same delivery at once: the unique (source, event id)
    key lets one win; the other answers as a duplicate."""
    from concurrent.futures import ThreadPoolExecutor

    from fieldsync.intake.api_models import BookingRequest
    from fieldsync.intake.commands import Book
    from fieldsync.intake.service import Envelope

    request = BookingRequest.model_validate(booking())
    envelope = Envelope("api:portal", "same-delivery", request.model_dump_json())

    def deliver(_: int) -> str:
        receipt = Intake(api.db).accept(envelope, lambda: [Book(request)], actor="portal",
                                        check_first=False)  # fmt: skip
        return "duplicate" if receipt.duplicate else receipt.state

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(deliver, range(4)))
    assert outcomes == ["applied", "duplicate", "duplicate", "duplicate"]
    assert _events(api.db) == ["fieldsync.appointment.booked"]
