"""ServiceTitan: HMAC of the body (header and encoding unverified), appointment times/cancels."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest

from fieldsync.intake.commands import AppointmentRef, Cancel, Change, Ignore
from fieldsync.intake.sources.base import PayloadError, StaticDirectory, WebhookRequest
from fieldsync.intake.sources.servicetitan import ServiceTitanSource
from tests.intake_sources.helpers import dump, payload, payload_bytes, refused, request

KEY = "st-hmac-key-0123456789abcdef0123456789abcdef"
HEADER = "X-ServiceTitan-Signature"
REF = AppointmentRef(source="servicetitan", source_id="61234987")


def signed(body: bytes, *, key: str = KEY, base64_form: bool = False) -> WebhookRequest:
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode() if base64_form else digest.hex()
    return request(body, {HEADER: signature})


def event(event_type: str = "Appointment.Rescheduled", **data: Any) -> bytes:
    body = payload("servicetitan_appointment_rescheduled.json")
    body["eventType"] = event_type
    body["data"].update(data)
    return dump(body)


def commands(body: bytes) -> list[Any]:
    return ServiceTitanSource(KEY).commands(signed(body), StaticDirectory())


def test_a_signature_in_hex_or_base64_is_accepted() -> None:
    body = payload_bytes("servicetitan_appointment_rescheduled.json")
    ServiceTitanSource(KEY).verify(signed(body))
    ServiceTitanSource(KEY).verify(signed(body, base64_form=True))


def test_the_signature_header_is_configurable() -> None:
    body = payload_bytes("servicetitan_appointment_rescheduled.json")
    genuine = signed(body)
    moved = request(body, {"ST-Signature": genuine.headers[HEADER.lower()]})
    ServiceTitanSource(KEY, signature_header="ST-Signature").verify(moved)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "the X-ServiceTitan-Signature header is missing"),
        ({HEADER: "abc"}, "header is malformed: expected an HMAC-SHA256"),
    ],
)
def test_missing_or_malformed_signatures_are_refused(
    headers: dict[str, str], expected: str
) -> None:
    req = request(payload_bytes("servicetitan_appointment_rescheduled.json"), headers)
    assert expected in refused(ServiceTitanSource(KEY).verify, req, KEY)


def test_wrong_key_and_tampered_body_are_refused() -> None:
    body = payload_bytes("servicetitan_appointment_rescheduled.json")
    expected = hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    verify = ServiceTitanSource(KEY).verify
    assert "does not match the body" in refused(verify, signed(body, key="x" * 32), KEY, expected)
    forged = request(body.replace(b"16:00:00Z", b"19:00:00Z"), signed(body).headers)
    assert "or the body was altered" in refused(verify, forged, KEY)


def test_event_id_is_the_event_id_and_stable() -> None:
    body = payload_bytes("servicetitan_appointment_rescheduled.json")
    source = ServiceTitanSource(KEY)
    assert source.event_id(signed(body)) == "0f5c2d1e-8b7a-4c39-9e61-2a4d7b8c9e10"
    without = payload("servicetitan_appointment_rescheduled.json")
    del without["eventId"]
    first = source.event_id(signed(dump(without)))
    assert first.startswith("sha256:") and first == source.event_id(signed(dump(without)))


def test_a_rescheduled_appointment_becomes_a_change_of_times() -> None:
    [command] = commands(payload_bytes("servicetitan_appointment_rescheduled.json"))
    assert isinstance(command, Change) and command.ref == REF
    assert command.change.start == datetime(2026, 5, 15, 16, 0, tzinfo=UTC)
    assert command.change.end == datetime(2026, 5, 15, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("Appointment.Updated", "Canceled"), ("Appointment.Canceled", "Scheduled")],
)
def test_a_canceled_appointment_cancels(event_type: str, status: str) -> None:
    [command] = commands(event(event_type, status=status))
    assert isinstance(command, Cancel) and command.ref == REF


def test_a_new_appointment_is_kept_for_replay_as_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="kept for replay") as caught:
        commands(event("Appointment.Created"))
    assert caught.value.errors[0].field == "eventType"


def test_other_events_are_ignored() -> None:
    [command] = commands(dump({"eventId": "e1", "eventType": "Invoice.Created", "data": {}}))
    assert isinstance(command, Ignore)


def test_an_end_before_the_start_is_a_payload_error() -> None:
    with pytest.raises(PayloadError) as caught:
        commands(event(end="2026-05-15T15:00:00Z"))
    assert caught.value.errors[0].field == "data.end"
