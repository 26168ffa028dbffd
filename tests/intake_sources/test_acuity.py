"""Acuity: base64 HMAC of the form body, and appointment details read from a fake Acuity API."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Ignore
from fieldsync.intake.sources.acuity import AcuitySource
from fieldsync.intake.sources.base import PayloadError, StaticDirectory, UpstreamUnavailable
from tests.fakes.acuity import FakeAcuity
from tests.fakes.loopback_api import Fault
from tests.intake_sources.helpers import NOW, payload, refused, request

USER_ID = "11145481"
API_KEY = "acuity-api-key-0b9f2e71c4"
CALENDAR_ID = 27238
DIRECTORY = StaticDirectory({"carla.ruiz@frontrange-hvac.example": "T-CARLA"})


@pytest.fixture
def fake() -> Iterator[FakeAcuity]:
    api = FakeAcuity(USER_ID, API_KEY)
    api.add_calendar(
        CALENDAR_ID,
        "Carla Ruiz",
        "dispatch@frontrange-hvac.example, carla.ruiz@frontrange-hvac.example",
        "America/Denver",
    )
    with api.running():
        yield api


@pytest.fixture
def source(fake: FakeAcuity) -> Iterator[AcuitySource]:
    acuity = AcuitySource(USER_ID, API_KEY, base_url=fake.url, timeout=0.5, max_retries=1)
    yield acuity
    acuity.close()


def sign(body: bytes, key: str = API_KEY) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def signed(body: bytes, *, key: str = API_KEY, at: datetime = NOW) -> Any:
    return request(body, {"X-Acuity-Signature": sign(body, key)}, at=at)


def booked(fake: FakeAcuity, **changes: Any) -> int:
    return fake.book(payload("acuity_appointment.json"), **changes)


# --- verify ---------------------------------------------------------------------------------


def test_a_correctly_signed_notice_is_accepted() -> None:
    AcuitySource(USER_ID, API_KEY).verify(signed(b"action=scheduled&id=54321&calendarID=1"))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "the X-Acuity-Signature header is missing"),
        ({"X-Acuity-Signature": "  "}, "the X-Acuity-Signature header is missing"),
        ({"X-Acuity-Signature": "sha256=abc"}, "header is malformed: expected a base64"),
        ({"X-Acuity-Signature": "0" * 64}, "header is malformed"),
    ],
)
def test_missing_or_malformed_signatures_are_refused(
    headers: dict[str, str], expected: str
) -> None:
    body = b"action=scheduled&id=54321"
    message = refused(AcuitySource(USER_ID, API_KEY).verify, request(body, headers), API_KEY)
    assert expected in message


def test_a_signature_made_with_another_key_is_refused() -> None:
    body = b"action=scheduled&id=54321"
    req = signed(body, key="not-our-key")
    message = refused(AcuitySource(USER_ID, API_KEY).verify, req, API_KEY, sign(body))
    assert "signature does not match the body (wrong API key" in message


def test_a_tampered_body_is_refused() -> None:
    genuine = signed(b"action=scheduled&id=54321")
    forged = request(b"action=canceled&id=54321", genuine.headers)
    message = refused(AcuitySource(USER_ID, API_KEY).verify, forged, API_KEY)
    assert "or the body was altered" in message


def test_the_source_repr_does_not_show_the_key() -> None:
    assert API_KEY not in repr(AcuitySource(USER_ID, API_KEY))


# --- identify -------------------------------------------------------------------------------


def test_event_id_collapses_duplicate_sends_but_not_a_later_identical_notice() -> None:
    source = AcuitySource(USER_ID, API_KEY)
    body = b"action=rescheduled&id=54321&calendarID=27238&appointmentTypeID=1"
    first = source.event_id(signed(body))
    assert first == source.event_id(signed(body, at=NOW + timedelta(milliseconds=300)))
    assert first.startswith("rescheduled:54321:")
    # A second reschedule of the same appointment has the same body: it must not be dropped.
    assert first != source.event_id(signed(body, at=NOW + timedelta(minutes=20)))
    other = b"action=canceled&id=54321&calendarID=27238&appointmentTypeID=1"
    assert first != source.event_id(signed(other))


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"id=54321", "action"), (b"action=scheduled", "id"), (b"action=scheduled&id=x", "id")],
)
def test_notices_without_action_or_id_are_payload_errors(body: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        AcuitySource(USER_ID, API_KEY).event_id(signed(body))
    assert caught.value.errors[0].field == field


def test_a_body_that_is_not_form_encoded_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not form-encoded"):
        AcuitySource(USER_ID, API_KEY).event_id(signed(b'{"action": "scheduled"}'))


# --- translate (against the fake Acuity API) ------------------------------------------------


def test_a_scheduled_notice_fetches_the_appointment_and_books_it(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    appointment_id = booked(fake)
    [command] = source.commands(signed(fake.webhook("scheduled", appointment_id)), DIRECTORY)
    assert isinstance(command, Book)
    job = command.booking
    assert (job.source, job.source_id) == ("acuity", str(appointment_id))
    assert job.technician_id == "T-CARLA"  # the calendar's second e-mail is the known one
    assert job.job_type == "Furnace tune-up"
    assert job.start == datetime(2026, 7, 2, 17, 15, tzinfo=UTC)
    assert job.resolved_end == datetime(2026, 7, 2, 18, 15, tzinfo=UTC)
    assert (job.customer_name, job.customer_email, job.customer_phone) == (
        "Bob McTest",
        "bob.mctest@example.com",
        "+1 555 0142",
    )
    assert job.address == "2100 W Fulton St, Denver, CO 80204"
    assert job.notes.splitlines() == [
        "Dog in the back yard",
        "Is this your first visit?: yes",
        "Furnace make and age: Lennox, about 12 years old",
    ]
    [fetch] = fake.calls("/api/v1/appointments/")
    assert fetch.path == f"/api/v1/appointments/{appointment_id}"
    assert fetch.headers["authorization"].startswith("Basic ")


def test_a_reschedule_books_the_current_state_as_an_upsert(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    appointment_id = booked(fake)
    fake.reschedule(appointment_id, datetime(2026, 7, 3, 8, 0, tzinfo=UTC))
    [command] = source.commands(signed(fake.webhook("rescheduled", appointment_id)), DIRECTORY)
    assert isinstance(command, Book)
    assert command.booking.start == datetime(2026, 7, 3, 8, 0, tzinfo=UTC)
    assert command.booking.source_id == str(appointment_id)


def test_a_canceled_notice_cancels_without_calling_acuity(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    appointment_id = booked(fake)
    [command] = source.commands(signed(fake.webhook("canceled", appointment_id)), DIRECTORY)
    assert command == Cancel(
        AppointmentRef(source="acuity", source_id=str(appointment_id)), "canceled in Acuity"
    )
    assert fake.requests == []


def test_a_changed_notice_for_a_canceled_appointment_cancels(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    appointment_id = booked(fake)
    fake.cancel(appointment_id)
    [command] = source.commands(signed(fake.webhook("changed", appointment_id)), DIRECTORY)
    assert isinstance(command, Cancel)


def test_dynamic_webhook_action_names_are_understood(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    appointment_id = booked(fake)
    body = fake.webhook("appointment.scheduled", appointment_id)
    assert isinstance(source.commands(signed(body), DIRECTORY)[0], Book)


def test_order_notices_are_ignored(source: AcuitySource) -> None:
    [command] = source.commands(signed(b"action=order.completed&id=991"), DIRECTORY)
    assert isinstance(command, Ignore) and "order.completed" in command.reason


def test_the_calendar_list_is_cached_and_reread_for_an_unknown_calendar(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    for _ in range(3):
        source.commands(signed(fake.webhook("scheduled", booked(fake))), DIRECTORY)
    assert len(fake.calls("/api/v1/calendars")) == 1
    fake.add_calendar(31000, "Dev Patel", "dev.patel@frontrange-hvac.example", "America/Denver")
    new_hire = StaticDirectory({"dev.patel@frontrange-hvac.example": "T-DEV"})
    body = fake.webhook("scheduled", booked(fake, calendarID=31000))
    [command] = source.commands(signed(body), new_hire)
    assert isinstance(command, Book) and command.booking.technician_id == "T-DEV"
    assert len(fake.calls("/api/v1/calendars")) == 2


def test_an_appointment_acuity_does_not_know_is_a_payload_error(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(b"action=scheduled&id=999"), DIRECTORY)
    [problem] = caught.value.errors
    assert problem.field == "id" and "999 does not exist in Acuity" in problem.message


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_throttling_are_upstream_unavailable(
    fake: FakeAcuity, source: AcuitySource, status: int
) -> None:
    appointment_id = booked(fake)
    fake.inject(Fault(status=status, retry_after="0", path="/api/v1/appointments/", times=5))
    with pytest.raises(UpstreamUnavailable) as caught:
        source.commands(signed(fake.webhook("scheduled", appointment_id)), DIRECTORY)
    assert API_KEY not in str(caught.value)
    assert len(fake.calls("/api/v1/appointments/")) == 2  # one try and max_retries=1


def test_a_timeout_is_upstream_unavailable(fake: FakeAcuity, source: AcuitySource) -> None:
    appointment_id = booked(fake)
    fake.inject(Fault(delay=1.0, path="/api/v1/appointments/", times=2))
    with pytest.raises(UpstreamUnavailable, match="ReadTimeout"):
        source.commands(signed(fake.webhook("scheduled", appointment_id)), DIRECTORY)


def test_a_dropped_connection_then_success_is_retried(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    appointment_id = booked(fake)
    fake.inject(Fault(drop=True, path="/api/v1/appointments/"))
    [command] = source.commands(signed(fake.webhook("scheduled", appointment_id)), DIRECTORY)
    assert isinstance(command, Book)


def test_refused_credentials_are_upstream_unavailable_without_the_key(fake: FakeAcuity) -> None:
    appointment_id = booked(fake)
    wrong = AcuitySource(USER_ID, "a-revoked-api-key", base_url=fake.url, max_retries=0)
    body = fake.webhook("scheduled", appointment_id)
    with pytest.raises(UpstreamUnavailable) as caught:
        wrong.commands(signed(body, key="a-revoked-api-key"), DIRECTORY)
    assert "refused the credentials" in str(caught.value)
    assert "a-revoked-api-key" not in str(caught.value)
    wrong.close()


def test_a_calendar_without_a_known_technician_is_a_payload_error(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    body = fake.webhook("scheduled", booked(fake))
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(body), StaticDirectory())
    [problem] = caught.value.errors
    assert problem.field == "calendarID" and "are not known technicians" in problem.message


def test_a_calendar_missing_from_the_account_is_a_payload_error(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    body = fake.webhook("scheduled", booked(fake, calendarID=4040))
    with pytest.raises(PayloadError, match="calendar 4040 is not in the Acuity account"):
        source.commands(signed(body), DIRECTORY)


def test_a_non_positive_duration_is_a_payload_error_naming_duration(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    body = fake.webhook("scheduled", booked(fake, duration="0"))
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(body), DIRECTORY)
    assert caught.value.errors[0].field == "duration"


def test_an_appointment_without_an_address_is_a_payload_error(
    fake: FakeAcuity, source: AcuitySource
) -> None:
    body = fake.webhook("scheduled", booked(fake, location=""))
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(body), DIRECTORY)
    assert caught.value.errors[0].field == "location"
