"""HubSpot: v3 signature over method+URI+body+timestamp, and meeting events read from the CRM."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Ignore
from fieldsync.intake.sources.base import (
    PayloadError,
    StaticDirectory,
    UpstreamUnavailable,
    WebhookRequest,
)
from fieldsync.intake.sources.hubspot import HubSpotSource, decode_uri
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.loopback_api import Fault
from tests.intake_sources.helpers import NOW, dump, payload, payload_bytes, refused, request

SECRET = "hubspot-client-secret-5d21e8aa"
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
URL = "https://intake.fieldsync.example/webhooks/hubspot"
MEETING = "10890427117"
DIRECTORY = StaticDirectory({"erin.tech@sound-plumbing.example": "T-ERIN"})


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    api = FakeHubSpot(TOKEN)
    api.add_owner("61837211", "Erin.Tech@sound-plumbing.example", "Erin", "Tech")
    api.add_contact("51", payload("hubspot_contact.json"))
    api.add_meeting(MEETING, payload("hubspot_meeting.json"), ["51"])
    with api.running():
        yield api


@pytest.fixture
def source(fake: FakeHubSpot) -> Iterator[HubSpotSource]:
    hubspot = HubSpotSource(SECRET, URL, TOKEN, base_url=fake.url, timeout=0.5, max_retries=1)
    yield hubspot
    hubspot.close()


def sign(body: bytes, timestamp: str, *, key: str = SECRET, uri: str = URL) -> str:
    message = b"POST" + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def signed(
    body: bytes, *, key: str = SECRET, sent: datetime = NOW, uri: str = URL
) -> WebhookRequest:
    timestamp = str(int(sent.timestamp() * 1000))
    headers = {
        "X-HubSpot-Signature-v3": sign(body, timestamp, key=key, uri=uri),
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-Version": "v3",
    }
    return request(body, headers)


def offline() -> HubSpotSource:
    return HubSpotSource(SECRET, URL, TOKEN, base_url="http://127.0.0.1:9")


def events(*changes: dict[str, Any]) -> bytes:
    base = payload("hubspot_meeting_events.json")[0]
    return dump([{**base, **change} for change in changes])


# --- verify ---------------------------------------------------------------------------------


def test_a_correctly_signed_batch_is_accepted() -> None:
    offline().verify(signed(payload_bytes("hubspot_meeting_events.json")))


def test_the_configured_url_is_decoded_as_hubspot_does_before_signing() -> None:
    assert decode_uri("https://x.example/hook%3Fa%3Db%2Cc") == "https://x.example/hook?a%3Db,c"
    encoded = "https://intake.fieldsync.example/webhooks/hubspot%3Ftenant%40acme"
    body = payload_bytes("hubspot_meeting_events.json")
    source = HubSpotSource(SECRET, encoded, TOKEN)
    source.verify(signed(body, uri=decode_uri(encoded)))


def _refusal(req: WebhookRequest) -> str:
    timestamp = req.header("X-HubSpot-Request-Timestamp") or "0"
    return refused(offline().verify, req, SECRET, TOKEN, sign(req.body, timestamp))


@pytest.mark.parametrize(
    ("drop", "replace", "expected"),
    [
        ("x-hubspot-signature-v3", None, "the X-HubSpot-Signature-v3 header is missing"),
        ("x-hubspot-request-timestamp", None, "the X-HubSpot-Request-Timestamp header is missing"),
        (None, ("x-hubspot-signature-v3", "sha256=xyz789"), "header is malformed"),
        (None, ("x-hubspot-request-timestamp", "soon"), "timestamp 'soon' is not a Unix time"),
    ],
)
def test_missing_or_malformed_headers_are_refused(
    drop: str | None, replace: tuple[str, str] | None, expected: str
) -> None:
    genuine = signed(payload_bytes("hubspot_meeting_events.json"))
    headers = {k: v for k, v in genuine.headers.items() if k != drop}
    if replace:
        headers[replace[0]] = replace[1]
    assert expected in _refusal(request(genuine.body, headers))


def test_a_signature_made_with_another_secret_is_refused() -> None:
    req = signed(payload_bytes("hubspot_meeting_events.json"), key="another-apps-secret")
    assert "signature does not match (wrong client secret" in _refusal(req)


def test_a_tampered_body_is_refused() -> None:
    genuine = signed(payload_bytes("hubspot_meeting_events.json"))
    forged = request(genuine.body.replace(b"0-47", b"0-48"), genuine.headers)
    assert "body altered" in _refusal(forged)


def test_a_signature_for_another_url_is_refused() -> None:
    body = payload_bytes("hubspot_meeting_events.json")
    req = signed(body, uri="https://attacker.example/webhooks/hubspot")
    assert "FIELDSYNC_HUBSPOT_WEBHOOK_URL" in _refusal(req)


def test_a_stale_timestamp_is_refused() -> None:
    req = signed(payload_bytes("hubspot_meeting_events.json"), sent=NOW - timedelta(minutes=6))
    assert "timestamp is 360 s old, more than the 300 s allowed" in _refusal(req)


def test_a_timestamp_too_far_in_the_future_is_refused() -> None:
    req = signed(payload_bytes("hubspot_meeting_events.json"), sent=NOW + timedelta(minutes=6))
    assert "360 s in the future" in _refusal(req)


def test_the_source_repr_shows_no_secret() -> None:
    text = repr(offline())
    assert SECRET not in text and TOKEN not in text


# --- identify -------------------------------------------------------------------------------


def test_event_id_ignores_the_attempt_number_and_batch_order() -> None:
    data = payload("hubspot_meeting_events.json")
    first = offline().event_id(signed(dump(data)))
    assert first == "batch:2916544-1781263007,2916551-1781263011,2916560-1781263015"
    retried = [{**e, "attemptNumber": 3} for e in reversed(data)]
    assert offline().event_id(signed(dump(retried))) == first
    assert offline().event_id(signed(dump(data[:1]))) != first


def test_a_body_that_is_not_an_event_array_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not a JSON array"):
        offline().event_id(signed(b'{"eventId": 1}'))


# --- translate (against the fake CRM) -------------------------------------------------------


def test_meeting_events_become_one_book_and_other_objects_are_ignored(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    book, other = source.commands(signed(payload_bytes("hubspot_meeting_events.json")), DIRECTORY)
    assert isinstance(book, Book)
    job = book.booking
    assert (job.source, job.source_id, job.technician_id) == ("hubspot", MEETING, "T-ERIN")
    assert job.job_type == "Water heater replacement"
    assert job.start == datetime(2026, 5, 13, 14, 0, tzinfo=UTC)
    assert job.resolved_duration == 120
    assert job.address == "811 Pine St, Seattle, WA 98101"
    assert (job.customer_name, job.customer_email, job.customer_phone) == (
        "Maya Okafor",
        "maya.okafor@example.com",
        "+1 206 555 0199",
    )
    assert job.notes.splitlines() == [
        "Customer reports no hot water.",
        "Bring a 50\xa0gal unit & expansion tank.",
        "Upsell: annual maintenance plan",
    ]
    assert isinstance(other, Ignore) and "0-1" in other.reason
    [meeting_read] = fake.calls("/crm/v3/objects/meetings/")
    assert "hs_activity_type" in meeting_read.query["properties"][0]
    assert meeting_read.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_meeting_that_is_not_a_field_job_is_ignored(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    fake.update_meeting(MEETING, hs_activity_type="Sales demo")
    [command] = source.commands(signed(events({})), DIRECTORY)
    assert isinstance(command, Ignore) and "'Sales demo' meeting, not a field job" in command.reason


def test_field_job_types_are_configurable(fake: FakeHubSpot) -> None:
    fake.update_meeting(MEETING, hs_activity_type="Installation")
    source = HubSpotSource(
        SECRET, URL, TOKEN, base_url=fake.url, field_job_types=["Installation", "Repair"]
    )
    assert isinstance(source.commands(signed(events({})), DIRECTORY)[0], Book)
    source.close()


def test_a_canceled_outcome_cancels(fake: FakeHubSpot, source: HubSpotSource) -> None:
    fake.update_meeting(MEETING, hs_meeting_outcome="CANCELED")
    [command] = source.commands(signed(events({})), DIRECTORY)
    assert isinstance(command, Cancel)
    assert command.ref == AppointmentRef(source="hubspot", source_id=MEETING)


def test_a_deletion_cancels_without_reading_the_meeting(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    body = events(
        {"subscriptionType": "object.propertyChange"}, {"subscriptionType": "object.deletion"}
    )
    fake.delete_meeting(MEETING)
    [command] = source.commands(signed(body), DIRECTORY)
    assert command == Cancel(
        AppointmentRef(source="hubspot", source_id=MEETING), "meeting deleted in HubSpot"
    )
    assert fake.calls("/crm/v3/objects/meetings/") == []


def test_a_meeting_gone_before_it_is_read_is_ignored(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    fake.delete_meeting(MEETING)
    [command] = source.commands(signed(events({})), DIRECTORY)
    assert isinstance(command, Ignore) and "no longer exists" in command.reason


def test_the_owner_lookup_is_cached(fake: FakeHubSpot, source: HubSpotSource) -> None:
    source.commands(signed(events({})), DIRECTORY)
    source.commands(signed(events({})), DIRECTORY)
    assert len(fake.calls("/crm/v3/owners/")) == 1


def test_an_owner_who_is_not_a_technician_is_a_payload_error(source: HubSpotSource) -> None:
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(events({})), StaticDirectory())
    [problem] = caught.value.errors
    assert problem.field == "hubspot_owner_id"
    assert "'Erin.Tech@sound-plumbing.example' is not the e-mail" in problem.message


def test_an_end_before_the_start_is_a_payload_error(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    fake.update_meeting(MEETING, hs_meeting_end_time="2026-05-13T13:00:00Z")
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(events({})), DIRECTORY)
    assert caught.value.errors[0].field == "properties.hs_meeting_end_time"


def test_a_meeting_without_a_contact_is_a_payload_error(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    fake.meeting_contacts[MEETING] = []
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(events({})), DIRECTORY)
    assert caught.value.errors[0].field == "associations.contacts"


def test_the_contact_address_stands_in_for_a_missing_location(
    fake: FakeHubSpot, source: HubSpotSource
) -> None:
    fake.update_meeting(MEETING, hs_meeting_location=None)
    [command] = source.commands(signed(events({})), DIRECTORY)
    assert isinstance(command, Book)
    assert command.booking.address == "811 Pine St, Seattle, WA, 98101"


@pytest.mark.parametrize("fault", [Fault(status=502, times=5), Fault(delay=1.0, times=5)])
def test_an_unavailable_crm_is_upstream_unavailable(
    fake: FakeHubSpot, source: HubSpotSource, fault: Fault
) -> None:
    fake.inject(fault)
    with pytest.raises(UpstreamUnavailable) as caught:
        source.commands(signed(events({})), DIRECTORY)
    assert TOKEN not in str(caught.value)


def test_a_revoked_token_is_upstream_unavailable_without_the_token(fake: FakeHubSpot) -> None:
    source = HubSpotSource(SECRET, URL, "pat-revoked-token", base_url=fake.url, max_retries=0)
    with pytest.raises(UpstreamUnavailable) as caught:
        source.commands(signed(events({})), DIRECTORY)
    assert "refused the access token" in str(caught.value)
    assert "pat-revoked-token" not in str(caught.value)
    source.close()
