"""Calendly: v1 signature over "t.body", replay window, and the invitee events as commands."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Change, Ignore
from fieldsync.intake.sources.base import PayloadError, StaticDirectory, WebhookRequest
from fieldsync.intake.sources.calendly import CalendlySource
from tests.intake_sources.helpers import NOW, dump, payload, payload_bytes, refused, request

KEY = "calendly-signing-key-7f3a9c"
OLD_URI = "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA"
NEW_URI = "https://api.calendly.com/scheduled_events/HCHCEDBBEBFEDSA3/invitees/BBBBBBBBBBBBBBBB"
DIRECTORY = StaticDirectory(
    {"alice.tech@acme-plumbing.example": "T-ALICE", "bob.tech@acme-plumbing.example": "T-BOB"}
)


def signature(body: bytes, *, key: str = KEY, at: datetime = NOW) -> str:
    t = str(int(at.timestamp()))
    return hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def signed(body: bytes, *, key: str = KEY, at: datetime = NOW, received: datetime = NOW) -> Any:
    header = f"t={int(at.timestamp())},v1={signature(body, key=key, at=at)}"
    return request(body, {"Calendly-Webhook-Signature": header}, at=received)


def commands(name: str, directory: StaticDirectory = DIRECTORY) -> list[Any]:
    return CalendlySource(KEY).commands(signed(payload_bytes(name)), directory)


# --- verify ---------------------------------------------------------------------------------


def test_a_correctly_signed_delivery_is_accepted() -> None:
    CalendlySource(KEY).verify(signed(payload_bytes("calendly_invitee_created.json")))


def test_any_of_several_v1_signatures_may_match_during_key_rotation() -> None:
    body = payload_bytes("calendly_invitee_created.json")
    t = int(NOW.timestamp())
    header = f"t={t},v1={'0' * 64},v1={signature(body)}"
    CalendlySource(KEY).verify(request(body, {"Calendly-Webhook-Signature": header}))


def _refusal(req: WebhookRequest, source: CalendlySource | None = None) -> str:
    expected = signature(req.body)
    return refused((source or CalendlySource(KEY)).verify, req, KEY, expected)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "the Calendly-Webhook-Signature header is missing"),
        ("", "the Calendly-Webhook-Signature header is missing"),
        ("garbage", "header is malformed: expected 't=<unix time>,v1=<hex>'"),
        ("t=1777878750,v1=", "header is malformed"),
        ("v1=abcdef", "header has no timestamp (t=)"),
        ("t=1777878750", "header has no v1 signature"),
        ("t=yesterday,v1=abcdef", "timestamp 'yesterday' is not a Unix time"),
    ],
)
def test_missing_or_malformed_headers_are_refused(header: str | None, expected: str) -> None:
    body = payload_bytes("calendly_invitee_created.json")
    headers = {} if header is None else {"Calendly-Webhook-Signature": header}
    assert expected in _refusal(request(body, headers))


def test_a_signature_made_with_another_key_is_refused() -> None:
    req = signed(payload_bytes("calendly_invitee_created.json"), key="someone-elses-key")
    assert "v1 signature does not match the body" in _refusal(req)


def test_a_tampered_body_is_refused() -> None:
    body = payload_bytes("calendly_invitee_created.json")
    genuine = signed(body)
    forged = request(body.replace(b"Boiler service", b"Boiler swap!!"), genuine.headers)
    assert "wrong signing key, or the body was altered" in _refusal(forged)


def test_a_stale_timestamp_is_refused_even_with_a_good_signature() -> None:
    body = payload_bytes("calendly_invitee_created.json")
    req = signed(body, at=NOW - timedelta(seconds=181))
    assert "timestamp is 181 s old, more than the 180 s allowed" in _refusal(req)


def test_a_timestamp_too_far_in_the_future_is_refused() -> None:
    body = payload_bytes("calendly_invitee_created.json")
    req = signed(body, at=NOW + timedelta(minutes=10))
    assert "timestamp is 600 s in the future, more than the 180 s allowed" in _refusal(req)


def test_the_tolerance_is_a_constructor_parameter() -> None:
    body = payload_bytes("calendly_invitee_created.json")
    late = signed(body, at=NOW - timedelta(minutes=4))
    CalendlySource(KEY, tolerance=timedelta(minutes=5)).verify(late)
    assert "old" in _refusal(late, CalendlySource(KEY))


def test_the_source_repr_does_not_show_the_key() -> None:
    assert KEY not in repr(CalendlySource(KEY))


# --- identify -------------------------------------------------------------------------------


def test_event_id_is_stable_across_redeliveries_and_distinct_per_event() -> None:
    source = CalendlySource(KEY)
    body = payload_bytes("calendly_invitee_created.json")
    first = source.event_id(signed(body))
    retried = source.event_id(signed(body, at=NOW + timedelta(hours=1), received=NOW))
    assert first == retried
    assert first.startswith("invitee.created:") and OLD_URI in first
    canceled = source.event_id(signed(payload_bytes("calendly_invitee_canceled.json")))
    halves = {
        source.event_id(signed(payload_bytes(name)))
        for name in ("calendly_reschedule_canceled.json", "calendly_reschedule_created.json")
    }
    assert len({first, canceled, *halves}) == 4


# --- translate ------------------------------------------------------------------------------


def test_a_new_booking_becomes_book() -> None:
    [command] = commands("calendly_invitee_created.json")
    assert isinstance(command, Book)
    job = command.booking
    assert job.source == "calendly" and job.source_id == OLD_URI
    assert job.technician_id == "T-ALICE"  # the host e-mail is matched case-insensitively
    assert job.job_type == "Boiler service"
    assert job.start == datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
    assert job.resolved_end == datetime(2026, 5, 12, 10, 30, tzinfo=UTC)
    assert job.resolved_duration == 90
    assert job.address == "14 Harbour Road, Bristol BS1 5TT"
    assert (job.customer_name, job.customer_email, job.customer_phone) == (
        "Dana Whitfield",
        "dana.whitfield@example.com",
        "+44 7700 900123",
    )
    assert job.notes == (
        "What needs fixing?: Boiler makes a knocking noise at start-up\n"
        "Access notes: Side gate code 4471"
    )


def test_a_reschedule_pair_becomes_one_change_and_one_ignore() -> None:
    [cancel_half] = commands("calendly_reschedule_canceled.json")
    [create_half] = commands("calendly_reschedule_created.json")
    assert isinstance(cancel_half, Ignore)
    assert "reschedule" in cancel_half.reason and NEW_URI in cancel_half.reason
    assert isinstance(create_half, Change)
    assert create_half.ref == AppointmentRef(source="calendly", source_id=OLD_URI)
    assert create_half.new_source_id == NEW_URI
    assert create_half.change.start == datetime(2026, 5, 14, 13, 0, tzinfo=UTC)
    assert create_half.change.end == datetime(2026, 5, 14, 14, 30, tzinfo=UTC)
    assert create_half.change.technician_id == "T-BOB"  # the new slot has another host


def test_a_plain_cancellation_becomes_cancel_with_the_reason() -> None:
    [command] = commands("calendly_invitee_canceled.json")
    assert command == Cancel(
        AppointmentRef(source="calendly", source_id=OLD_URI), reason="Fixed it myself"
    )


def test_other_calendly_events_are_ignored() -> None:
    data = payload("calendly_invitee_created.json")
    data["event"] = "invitee_no_show.created"
    [command] = CalendlySource(KEY).commands(signed(dump(data)), DIRECTORY)
    assert isinstance(command, Ignore) and "invitee_no_show.created" in command.reason


def _payload_error(data: Any, directory: StaticDirectory = DIRECTORY) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        CalendlySource(KEY).commands(signed(dump(data)), directory)
    return caught.value


def test_an_unknown_host_is_a_payload_error_naming_the_field() -> None:
    error = _payload_error(payload("calendly_invitee_created.json"), StaticDirectory())
    [problem] = error.errors
    assert problem.field == "payload.scheduled_event.event_memberships"
    assert "'Alice.Tech@acme-plumbing.example' is not the e-mail of a known technician" in (
        problem.message
    )


def test_a_reschedule_to_an_unknown_host_is_a_payload_error_too() -> None:
    directory = StaticDirectory({"alice.tech@acme-plumbing.example": "T-ALICE"})
    error = _payload_error(payload("calendly_reschedule_created.json"), directory)
    assert error.errors[0].field == "payload.scheduled_event.event_memberships"


def test_an_end_before_the_start_is_a_payload_error() -> None:
    data = payload("calendly_invitee_created.json")
    data["payload"]["scheduled_event"]["end_time"] = "2026-05-12T08:00:00.000000Z"
    [problem] = _payload_error(data).errors
    assert problem.field == "payload.scheduled_event.end_time"
    assert "is not after the start" in problem.message


def test_a_video_meeting_without_an_address_answer_is_a_payload_error() -> None:
    data = payload("calendly_invitee_created.json")
    data["payload"]["scheduled_event"]["location"] = {
        "type": "zoom",
        "join_url": "https://zoom.example/j/1",
    }
    [problem] = _payload_error(data).errors
    assert problem.field == "payload.scheduled_event.location"
    assert "no street address (location type 'zoom')" in problem.message


def test_an_address_question_stands_in_for_a_missing_location() -> None:
    data = payload("calendly_invitee_created.json")
    data["payload"]["scheduled_event"]["location"] = {"type": "outbound_call", "location": "+44"}
    data["payload"]["questions_and_answers"].append(
        {"question": "Service address", "answer": "2 Mill Lane, Bath", "position": 2}
    )
    [command] = CalendlySource(KEY).commands(signed(dump(data)), DIRECTORY)
    assert isinstance(command, Book) and command.booking.address == "2 Mill Lane, Bath"


def test_model_errors_name_the_calendly_field() -> None:
    data = payload("calendly_invitee_created.json")
    data["payload"]["email"] = "not-an-address"
    [problem] = _payload_error(data).errors
    assert problem.field == "payload.email" and "is not an e-mail address" in problem.message


def test_a_body_that_is_not_json_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        CalendlySource(KEY).commands(signed(b"<html>"), DIRECTORY)
    with pytest.raises(PayloadError, match="not JSON"):
        CalendlySource(KEY).event_id(signed(b"<html>"))


def test_a_missing_scheduled_event_is_a_payload_error() -> None:
    data = payload("calendly_invitee_created.json")
    del data["payload"]["scheduled_event"]
    [problem] = _payload_error(data).errors
    assert problem.field == "payload.scheduled_event"
