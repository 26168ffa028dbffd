"""Housecall Pro: HMAC over "timestamp.body" (scheme unverified), and jobs as sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldsync.domain import AppointmentStatus
from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Ignore
from fieldsync.intake.sources.base import PayloadError, StaticDirectory, WebhookRequest
from fieldsync.intake.sources.housecall_pro import HousecallProSource
from tests.intake_sources.helpers import NOW, dump, payload, payload_bytes, refused, request

SECRET = "hcp-signing-secret-4c0e91b2"
JOB = "job_4f1c8e2a9b7d4c0f8a1e6b3d2c5f7a90"
DIRECTORY = StaticDirectory({"tasha.nguyen@bluewater-plumbing.example": "T-TASHA"})


def digest(body: bytes, timestamp: str, key: str = SECRET) -> bytes:
    return hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).digest()


def signed(
    body: bytes, *, key: str = SECRET, sent: datetime = NOW, base64_form: bool = False
) -> WebhookRequest:
    timestamp = str(int(sent.timestamp()))
    raw = digest(body, timestamp, key)
    signature = base64.b64encode(raw).decode() if base64_form else raw.hex()
    return request(body, {"Api-Timestamp": timestamp, "Api-Signature": signature})


def job_event(event: str = "job.scheduled", **job_changes: Any) -> bytes:
    data = payload("housecallpro_job_scheduled.json")
    data["event"] = event
    data["job"].update(job_changes)
    return dump(data)


def commands(body: bytes, directory: StaticDirectory = DIRECTORY) -> list[Any]:
    return HousecallProSource(SECRET).commands(signed(body), directory)


# --- verify ---------------------------------------------------------------------------------


def test_a_signature_in_hex_or_base64_is_accepted() -> None:
    body = payload_bytes("housecallpro_job_scheduled.json")
    HousecallProSource(SECRET).verify(signed(body))
    HousecallProSource(SECRET).verify(signed(body, base64_form=True))


def test_a_millisecond_timestamp_is_understood() -> None:
    body = payload_bytes("housecallpro_job_scheduled.json")
    timestamp = str(int(NOW.timestamp() * 1000))
    headers = {"Api-Timestamp": timestamp, "Api-Signature": digest(body, timestamp).hex()}
    HousecallProSource(SECRET).verify(request(body, headers))


def _refusal(req: WebhookRequest) -> str:
    timestamp = req.header("Api-Timestamp") or "0"
    expected = digest(req.body, timestamp).hex()
    return refused(HousecallProSource(SECRET).verify, req, SECRET, expected)


@pytest.mark.parametrize(
    ("drop", "replace", "expected"),
    [
        ("api-signature", None, "the Api-Signature header is missing"),
        ("api-timestamp", None, "the Api-Timestamp header is missing"),
        (None, ("api-timestamp", "2026-05-04"), "the Api-Timestamp header is not a Unix time"),
        (None, ("api-signature", "sha256=abc"), "header is malformed: expected an HMAC-SHA256"),
    ],
)
def test_missing_or_malformed_headers_are_refused(
    drop: str | None, replace: tuple[str, str] | None, expected: str
) -> None:
    genuine = signed(payload_bytes("housecallpro_job_scheduled.json"))
    headers = {k: v for k, v in genuine.headers.items() if k != drop}
    if replace:
        headers[replace[0]] = replace[1]
    assert expected in _refusal(request(genuine.body, headers))


def test_a_signature_made_with_another_secret_is_refused() -> None:
    req = signed(payload_bytes("housecallpro_job_scheduled.json"), key="other-secret")
    assert "does not match (wrong signing secret" in _refusal(req)


def test_a_tampered_body_is_refused() -> None:
    genuine = signed(payload_bytes("housecallpro_job_scheduled.json"))
    forged = request(genuine.body.replace(b"14:00:00Z", b"16:00:00Z"), genuine.headers)
    assert "body or timestamp was altered" in _refusal(forged)


def test_a_replayed_signature_with_a_new_timestamp_is_refused() -> None:
    genuine = signed(payload_bytes("housecallpro_job_scheduled.json"))
    moved = {**genuine.headers, "api-timestamp": str(int(NOW.timestamp()) + 5)}
    assert "does not match" in _refusal(request(genuine.body, moved))


def test_stale_and_future_timestamps_are_refused() -> None:
    body = payload_bytes("housecallpro_job_scheduled.json")
    assert "301 s old" in _refusal(signed(body, sent=NOW - timedelta(seconds=301)))
    assert "in the future" in _refusal(signed(body, sent=NOW + timedelta(minutes=10)))


# --- identify -------------------------------------------------------------------------------


def test_event_id_is_event_job_and_version() -> None:
    source = HousecallProSource(SECRET)
    body = payload_bytes("housecallpro_job_scheduled.json")
    first = source.event_id(signed(body))
    assert first == f"job.scheduled:{JOB}:2026-05-04T07:12:19Z"
    assert source.event_id(signed(body, sent=NOW + timedelta(seconds=30))) == first
    later = job_event(updated_at="2026-05-04T08:00:00Z")
    assert source.event_id(signed(later)) != first


# --- translate ------------------------------------------------------------------------------


def test_a_scheduled_job_is_booked_from_the_payload() -> None:
    [command] = commands(payload_bytes("housecallpro_job_scheduled.json"))
    assert isinstance(command, Book)
    job = command.booking
    assert (job.source, job.source_id, job.technician_id) == ("housecallpro", JOB, "T-TASHA")
    assert job.status is AppointmentStatus.SCHEDULED
    assert job.job_type == "Water heater flush"
    assert job.start == datetime(2026, 5, 14, 14, 0, tzinfo=UTC)
    assert job.resolved_duration == 90
    assert (job.customer_name, job.customer_email, job.customer_phone) == (
        "Luis Ortega",
        "luis.ortega@example.com",
        "5125550143",
    )
    assert job.address == "2207 Cesar Chavez St, Unit B, Austin, TX, 78702, US"
    assert job.notes == "Gate code 1984. Tank is in the attic."


@pytest.mark.parametrize(
    ("event", "changes"),
    [
        ("job.canceled", {}),
        ("job.deleted", {}),
        ("job.updated", {"work_status": "pro canceled"}),
        ("job.updated", {"work_status": "unscheduled"}),
        ("job.updated", {"schedule": {"scheduled_start": None, "scheduled_end": None}}),
    ],
)
def test_canceled_deleted_and_unscheduled_jobs_cancel(event: str, changes: dict[str, Any]) -> None:
    [command] = commands(job_event(event, **changes))
    assert isinstance(command, Cancel)
    assert command.ref == AppointmentRef(source="housecallpro", source_id=JOB)


def test_a_job_in_progress_keeps_its_status() -> None:
    [command] = commands(job_event("job.started", work_status="in progress"))
    assert isinstance(command, Book)
    assert command.booking.status is AppointmentStatus.IN_PROGRESS


def test_non_job_events_are_ignored() -> None:
    body = dump({"event": "customer.updated", "customer": {"id": "cus_1"}})
    [command] = commands(body)
    assert isinstance(command, Ignore) and "customer.updated" in command.reason


def test_an_unassigned_job_is_booked_unassigned() -> None:
    [command] = commands(job_event(assigned_employees=[]))
    assert isinstance(command, Book) and command.booking.technician_id is None


def test_an_unknown_employee_is_a_payload_error_naming_the_field() -> None:
    with pytest.raises(PayloadError) as caught:
        commands(payload_bytes("housecallpro_job_scheduled.json"), StaticDirectory())
    assert caught.value.errors[0].field == "job.assigned_employees"


def test_an_end_before_the_start_is_a_payload_error() -> None:
    schedule = {"scheduled_start": "2026-05-14T14:00:00Z", "scheduled_end": "2026-05-14T13:00:00Z"}
    with pytest.raises(PayloadError) as caught:
        commands(job_event(schedule=schedule))
    assert caught.value.errors[0].field == "job.schedule.scheduled_end"


def test_a_job_without_an_address_is_a_payload_error() -> None:
    with pytest.raises(PayloadError) as caught:
        commands(job_event(address=None))
    assert caught.value.errors[0].field == "job.address"
