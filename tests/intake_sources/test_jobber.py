"""Jobber: base64 HMAC of the JSON body, and visits read from a fake GraphQL API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fieldsync.intake.commands import AppointmentRef, Book, Cancel, Ignore
from fieldsync.intake.sources.base import (
    PayloadError,
    StaticDirectory,
    UpstreamUnavailable,
    WebhookRequest,
)
from fieldsync.intake.sources.jobber import JobberSource
from tests.fakes.jobber import FakeJobber
from tests.fakes.loopback_api import Fault
from tests.intake_sources.helpers import dump, payload, payload_bytes, refused, request

SECRET = "jobber-oauth-client-secret-77a1"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.jobber-access.sig"
VISIT = "Z2lkOi8vSm9iYmVyL1Zpc2l0LzkwMjE0NTY="
DIRECTORY = StaticDirectory({"sam.rivera@greenline-lawn.example": "T-SAM"})


@pytest.fixture
def fake() -> Iterator[FakeJobber]:
    api = FakeJobber(TOKEN)
    api.add_visit(VISIT, payload("jobber_visit.json"))
    with api.running():
        yield api


@pytest.fixture
def source(fake: FakeJobber) -> Iterator[JobberSource]:
    jobber = JobberSource(
        SECRET, TOKEN, api_url=fake.url + "/api/graphql", timeout=0.5, max_retries=1
    )
    yield jobber
    jobber.close()


def sign(body: bytes, key: str = SECRET) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def signed(body: bytes, *, key: str = SECRET) -> WebhookRequest:
    return request(body, {"X-Jobber-Hmac-SHA256": sign(body, key)})


def notice(topic: str = "VISIT_UPDATE", **changes: Any) -> bytes:
    data = payload("jobber_visit_update.json")
    data["data"]["webHookEvent"].update(topic=topic, **changes)
    return dump(data)


# --- verify ---------------------------------------------------------------------------------


def test_a_correctly_signed_notice_is_accepted() -> None:
    JobberSource(SECRET, TOKEN).verify(signed(payload_bytes("jobber_visit_update.json")))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "the X-Jobber-Hmac-SHA256 header is missing"),
        ({"X-Jobber-Hmac-SHA256": "not base64!"}, "header is malformed: expected a base64"),
    ],
)
def test_missing_or_malformed_signatures_are_refused(
    headers: dict[str, str], expected: str
) -> None:
    req = request(payload_bytes("jobber_visit_update.json"), headers)
    assert expected in refused(JobberSource(SECRET, TOKEN).verify, req, SECRET, TOKEN)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    body = payload_bytes("jobber_visit_update.json")
    message = refused(JobberSource(SECRET, TOKEN).verify, signed(body, key="x"), SECRET, sign(body))
    assert "does not match the body (wrong OAuth client secret" in message


def test_a_tampered_body_is_refused() -> None:
    genuine = signed(payload_bytes("jobber_visit_update.json"))
    forged = request(genuine.body.replace(b"VISIT_UPDATE", b"VISIT_DESTROY"), genuine.headers)
    message = refused(JobberSource(SECRET, TOKEN).verify, forged, SECRET)
    assert "or the body was altered" in message


def test_the_source_repr_shows_no_secret() -> None:
    text = repr(JobberSource(SECRET, TOKEN))
    assert SECRET not in text and TOKEN not in text


# --- identify -------------------------------------------------------------------------------


def test_event_id_is_topic_item_and_time_and_stable_across_redeliveries() -> None:
    source = JobberSource(SECRET, TOKEN)
    body = payload_bytes("jobber_visit_update.json")
    first = source.event_id(signed(body))
    assert first == f"VISIT_UPDATE:{VISIT}:2026-05-04T01:12:20-06:00"
    reformatted = json.dumps(json.loads(body), indent=2).encode()  # same event, other bytes
    assert source.event_id(signed(reformatted)) == first
    assert source.event_id(signed(notice(occurredAt="2026-05-04T01:15:00-06:00"))) != first


def test_the_old_occuredat_spelling_is_read() -> None:
    data = payload("jobber_visit_update.json")
    event = data["data"]["webHookEvent"]
    event["occuredAt"] = event.pop("occurredAt")
    assert JobberSource(SECRET, TOKEN).event_id(signed(dump(data))).endswith("01:12:20-06:00")


def test_a_body_without_the_event_is_a_payload_error() -> None:
    with pytest.raises(PayloadError) as caught:
        JobberSource(SECRET, TOKEN).event_id(signed(b'{"data": {}}'))
    assert caught.value.errors[0].field == "data.webHookEvent"


# --- translate (against the fake GraphQL API) -----------------------------------------------


def test_a_visit_update_reads_the_visit_and_books_it(
    fake: FakeJobber, source: JobberSource
) -> None:
    [command] = source.commands(signed(payload_bytes("jobber_visit_update.json")), DIRECTORY)
    assert isinstance(command, Book)
    job = command.booking
    assert (job.source, job.source_id, job.technician_id) == ("jobber", VISIT, "T-SAM")
    assert job.job_type == "Spring irrigation start-up"
    assert job.start == datetime(2026, 5, 11, 14, 0, tzinfo=UTC)
    assert job.resolved_duration == 90
    assert job.customer_name == "Priya Shah"
    assert job.customer_email == "priya.shah@example.com"  # the primary one
    assert job.customer_phone == "(303) 555-0175"
    assert job.address == "4410 Vrain St, Denver, CO, 80212, United States"
    assert job.notes.splitlines() == [
        "Main shut-off is in the garage, left of the water heater.",
        "Check zone 3 for leaks.",
    ]
    [call] = fake.calls("/api/graphql")
    assert call.headers["x-jobber-graphql-version"] == "2025-04-16"
    assert json.loads(call.body)["variables"] == {"id": VISIT}


def test_a_visit_destroy_cancels_without_a_query(fake: FakeJobber, source: JobberSource) -> None:
    [command] = source.commands(signed(notice("VISIT_DESTROY")), DIRECTORY)
    assert command == Cancel(
        AppointmentRef(source="jobber", source_id=VISIT), "visit deleted in Jobber"
    )
    assert fake.requests == []


def test_an_unscheduled_visit_cancels(fake: FakeJobber, source: JobberSource) -> None:
    fake.visits[VISIT].update(startAt=None, endAt=None)
    [command] = source.commands(signed(notice()), DIRECTORY)
    assert isinstance(command, Cancel) and "unscheduled" in command.reason


def test_other_topics_are_ignored(source: JobberSource) -> None:
    [command] = source.commands(signed(notice("CLIENT_UPDATE")), DIRECTORY)
    assert isinstance(command, Ignore) and "CLIENT_UPDATE" in command.reason


def test_an_unassigned_visit_is_booked_unassigned(fake: FakeJobber, source: JobberSource) -> None:
    fake.visits[VISIT]["assignedUsers"] = {"nodes": []}
    [command] = source.commands(signed(notice()), DIRECTORY)
    assert isinstance(command, Book) and command.booking.technician_id is None


def test_an_assignee_who_is_not_a_technician_is_a_payload_error(source: JobberSource) -> None:
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(notice()), StaticDirectory())
    [problem] = caught.value.errors
    assert problem.field == "visit.assignedUsers"
    assert "'sam.rivera@greenline-lawn.example' is not the e-mail" in problem.message


def test_an_end_before_the_start_is_a_payload_error(fake: FakeJobber, source: JobberSource) -> None:
    fake.visits[VISIT]["endAt"] = "2026-05-11T07:00:00-06:00"
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(notice()), DIRECTORY)
    assert caught.value.errors[0].field == "visit.endAt"


def test_a_visit_jobber_does_not_know_is_a_payload_error(
    fake: FakeJobber, source: JobberSource
) -> None:
    del fake.visits[VISIT]
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(notice()), DIRECTORY)
    assert caught.value.errors[0].field == "data.webHookEvent.itemId"


def test_a_property_without_an_address_is_a_payload_error(
    fake: FakeJobber, source: JobberSource
) -> None:
    fake.visits[VISIT]["property"] = {"address": {}}
    with pytest.raises(PayloadError) as caught:
        source.commands(signed(notice()), DIRECTORY)
    assert caught.value.errors[0].field == "visit.property.address"


def test_graphql_throttling_is_retried(fake: FakeJobber, source: JobberSource) -> None:
    fake.throttle(1)
    assert isinstance(source.commands(signed(notice()), DIRECTORY)[0], Book)
    assert len(fake.calls("/api/graphql")) == 2


def test_lasting_throttling_is_upstream_unavailable(fake: FakeJobber, source: JobberSource) -> None:
    fake.throttle(5)
    with pytest.raises(UpstreamUnavailable, match="Throttled"):
        source.commands(signed(notice()), DIRECTORY)


@pytest.mark.parametrize("fault", [Fault(status=503, times=5), Fault(delay=1.0, times=5)])
def test_an_unavailable_api_is_upstream_unavailable(
    fake: FakeJobber, source: JobberSource, fault: Fault
) -> None:
    fake.inject(fault)
    with pytest.raises(UpstreamUnavailable) as caught:
        source.commands(signed(notice()), DIRECTORY)
    assert TOKEN not in str(caught.value)


def test_an_expired_token_is_upstream_unavailable_without_the_token(fake: FakeJobber) -> None:
    expired = "eyJ.expired-token.sig"
    source = JobberSource(SECRET, expired, api_url=fake.url + "/api/graphql", max_retries=0)
    with pytest.raises(UpstreamUnavailable) as caught:
        source.commands(signed(notice()), DIRECTORY)
    assert "expire after 60 minutes" in str(caught.value) and expired not in str(caught.value)
    source.close()


def test_a_token_provider_is_asked_on_every_call(fake: FakeJobber) -> None:
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return TOKEN

    source = JobberSource(SECRET, provider, api_url=fake.url + "/api/graphql")
    source.commands(signed(notice()), DIRECTORY)
    source.commands(signed(notice()), DIRECTORY)
    assert len(asked) >= 2
    source.close()
