"""The intake's own API, through HTTP: what is stored, what events are owed, what is refused
and how precisely."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, DeadLetter, IntakeRequest, OutboxEvent
from tests.intake.conftest import Api, booking


def outbox(db: str) -> list[tuple[str, str]]:
    with session_scope(db) as session:
        rows = session.execute(
            select(OutboxEvent.event, OutboxEvent.resource_id).order_by(OutboxEvent.occurred)
        ).all()
        return [(e, r) for e, r in rows]


def count(db: str, table: type) -> int:
    with session_scope(db) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_booking_is_stored_with_its_event_and_a_redelivery_changes_nothing(api: Api) -> None:
    first = api.client.post("/v1/appointments", json=booking(), headers=api.auth)
    assert first.status_code == 201, first.text
    [job] = first.json()["appointment_ids"]
    assert outbox(api.db) == [("fieldsync.appointment.booked", f"fieldsync.appointment.{job}")]

    again = api.client.post("/v1/appointments", json=booking(), headers=api.auth)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(outbox(api.db)) == 1 and count(api.db, IntakeRequest) == 1
    with session_scope(api.db) as session:
        appt = session.get(Appointment, job)
        assert appt is not None and appt.version == 1 and appt.duration_minutes == 90


def test_idempotency_key_names_the_request(api: Api) -> None:
    headers = {**api.auth, "Idempotency-Key": "desk-42"}
    assert api.client.post("/v1/appointments", json=booking(1), headers=headers).status_code == 201
    # Same key, other body: the first answer stands, nothing new is stored.
    repeat = api.client.post("/v1/appointments", json=booking(2), headers=headers)
    assert repeat.json()["duplicate"] is True
    assert count(api.db, Appointment) == 1


def test_double_booking_is_stored_flagged_and_announced(api: Api) -> None:
    api.client.post("/v1/appointments", json=booking(1), headers=api.auth)
    second = api.client.post("/v1/appointments", json=booking(2), headers=api.auth)
    assert second.status_code == 201
    assert second.json()["double_booked_with"]
    assert "fieldsync.conflict.detected" in second.json()["events"]


def test_reschedule_cancel_and_status_each_owe_their_event(api: Api) -> None:
    [job] = api.client.post("/v1/appointments", json=booking(), headers=api.auth).json()[
        "appointment_ids"
    ]
    later = {"start": "2026-12-01T13:00:00-06:00"}
    moved = api.client.post(f"/v1/appointments/{job}/reschedule", json=later, headers=api.auth)
    assert moved.status_code == 200 and moved.json()["events"] == ["fieldsync.appointment.changed"]
    late = api.client.post(
        "/v1/technicians/T1/status",
        json={"appointment_id": job, "status": "delayed", "eta": "2026-12-01T13:40:00-06:00"},
        headers={"Authorization": f"Bearer {api.status_token}"},
    )
    assert late.status_code == 200 and late.json()["events"] == ["fieldsync.technician.status"]
    gone = api.client.post(f"/v1/appointments/{job}/cancel", json={"reason": "no access"},
                           headers=api.auth)  # fmt: skip
    assert gone.json()["events"] == ["fieldsync.appointment.canceled"]
    with session_scope(api.db) as session:
        appt = session.get(Appointment, job)
        assert appt is not None
        assert appt.status == "canceled" and appt.start.hour == 19 and appt.start.minute == 40


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (b'{"source": "portal",', 400, None, "not valid JSON"),
        (json.dumps(booking(technician_id=["T1"])).encode(), 422, "technician_id", "not text"),
        (json.dumps({k: v for k, v in booking().items() if k != "address"}).encode(), 422,
         "address", "required"),
        (json.dumps(booking(start="2026-12-01T09:00:00")).encode(), 422, "start", "no UTC offset"),
        (json.dumps(booking(end="2026-12-01T08:00:00-06:00", duration_minutes=None)).encode(),
         422, "end", "not after start"),
        (json.dumps(booking(source="fax")).encode(), 422, "source", "fax"),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_4xx_naming_the_problem(
    api: Api, body: bytes, status: int, field: str | None, words: str
) -> None:
    response = api.client.post(
        "/v1/appointments", content=body,
        headers={**api.auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == status, response.text
    problems = response.json()["errors"]
    assert any(p["field"] == field and words in p["message"] for p in problems) or (
        words in response.json()["error"]
    ), response.text
    assert count(api.db, Appointment) == 0


def test_unknown_technician_is_refused_and_dead_lettered_with_the_raw_body(api: Api) -> None:
    response = api.client.post("/v1/appointments", json=booking(technician_id="T9"),
                               headers=api.auth)  # fmt: skip
    assert response.status_code == 422 and "T9" in response.json()["error"]
    with session_scope(api.db) as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        assert '"T9"' in json.loads(letter.payload)["body"]


def test_credentials_and_size_are_checked_before_anything_is_stored(api: Api) -> None:
    assert api.client.post("/v1/appointments", json=booking()).status_code == 401
    wrong = {"Authorization": f"Bearer {api.status_token}"}  # a status token is no API key
    assert api.client.post("/v1/appointments", json=booking(), headers=wrong).status_code == 401
    big = api.client.post("/v1/appointments", content=b"{" + b" " * (1024 * 1024) + b"}",
                          headers={**api.auth, "Content-Type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and "1 MiB" in big.json()["error"]
    assert count(api.db, IntakeRequest) == 0 and count(api.db, DeadLetter) == 0


def test_status_needs_that_technicians_own_token(api: Api) -> None:
    [job] = api.client.post("/v1/appointments", json=booking(), headers=api.auth).json()[
        "appointment_ids"
    ]
    body = {"appointment_id": job, "status": "completed"}
    assert api.client.post("/v1/technicians/T1/status", json=body).status_code == 401
    other = api.client.post("/v1/technicians/T2/status", json=body,
                            headers={"Authorization": f"Bearer {api.status_token}"})  # fmt: skip
    assert other.status_code == 403


def test_unknown_appointment_is_a_404(api: Api) -> None:
    response = api.client.post("/v1/appointments/J-nope/cancel", headers=api.auth)
    assert response.status_code == 404 and "J-nope" in response.json()["error"]


def test_ics_feed_is_served_only_at_its_token(api: Api) -> None:
    feed = api.client.get(f"/feeds/{api.feed_token}.ics")
    assert feed.status_code == 200 and feed.text.startswith("BEGIN:VCALENDAR")
    assert api.client.get(f"/feeds/{api.status_token}.ics").status_code == 404
    assert api.client.get("/feeds/guess.ics").status_code == 404


def test_rescheduling_options_and_applying_one(api: Api) -> None:
    [job] = api.client.post("/v1/appointments", json=booking(priority="emergency"),
                            headers=api.auth).json()["appointment_ids"]  # fmt: skip
    asked = {"situation": "emergency", "as_of": "2026-12-01T07:00:00-06:00"}
    offered = api.client.post(f"/v1/appointments/{job}/options", json=asked, headers=api.auth)
    assert offered.status_code == 200, offered.text
    options = offered.json()["options"]
    assert options and options[0]["rank"] == 1
    best = options[0]
    applied = api.client.post(f"/v1/appointments/{job}/options/1/apply", json=asked,
                              headers=api.auth)  # fmt: skip
    assert applied.status_code == 200, applied.text
    with session_scope(api.db) as session:
        appt = session.get(Appointment, job)
        assert appt is not None and appt.technician_id == best["technician_id"]
        assert appt.start.isoformat() == best["start"].replace("-06:00", "+00:00") or (
            appt.start.timestamp() == __import__("datetime").datetime.fromisoformat(
                best["start"]).timestamp()
        )  # fmt: skip
    bad = api.client.post(f"/v1/appointments/{job}/options", json={"situation": "delay"},
                          headers=api.auth)  # fmt: skip
    assert bad.status_code == 422 and "ETA" in bad.json()["error"]
