"""Google Calendar connector against the stateful fake Google (tests/fakes/google_calendar.py):
the real google-api-python-client, google-auth and httpx, over loopback HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from prefect.blocks.core import Block

from blocks.google import GoogleCalendarCredentials, GoogleWorkspaceCredentials
from connectors.base import Op, RemoteRef
from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
    RateLimitedError,
    TransientError,
)
from connectors.google_calendar import (
    STAMP_KEY,
    GoogleCalendarConnector,
    GoogleQuotas,
    GoogleWorkspaceConnector,
    OAuthUserAuth,
    Quota,
    QuotaBuckets,
    ServiceAccountAuth,
    event_body,
    event_id_for,
)
from connectors.http import backoff_scale
from fieldsync.domain import OpKind
from tests.contract.connector_contract import CHICAGO, ConnectorContract, sample_event
from tests.fakes.google_calendar import (
    FakeGoogleCalendar,
    Fault,
    ServiceAccountKey,
    new_service_account,
)

CLIENT_ID = "1234-fieldsync.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-client-secret-do-not-leak"
REFRESH_TOKEN = "1//refresh-token-do-not-leak-0123456789"
DISPATCHER = "dispatcher@example.com"
TECH = "tech1@example.com"
TECH2 = "tech2@example.com"
# Quotas far above what a test sends, so only the tests about quotas ever wait on them.
NO_QUOTA = GoogleQuotas(per_user=Quota(10**7, 10**6), per_project=Quota(10**8, 10**7))


def rate_limited(**where: Any) -> Fault:
    """Google's per-user rate limit, which it reports as 403 rather than 429."""
    return Fault(
        status=403,
        reason="rateLimitExceeded",
        domain="usageLimits",
        message="Rate Limit Exceeded",
        **where,
    )


class Sleeps(list[float]):
    """Records the delays the connector asks for instead of waiting them out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def service_account_key() -> ServiceAccountKey:
    return new_service_account("fieldsync@fieldsync-test.iam.gserviceaccount.com")


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        server.add_oauth_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, DISPATCHER)
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def oauth_connector(
    fake: FakeGoogleCalendar, sleeps: Sleeps | None = None, **kwargs: Any
) -> GoogleCalendarConnector:
    settings: dict[str, Any] = {
        "api_base_url": fake.base_url,
        "credentials_name": "google-dispatch",
        "timeout": 0.5,
        "max_retries": 3,
        "quotas": NO_QUOTA,
        "buckets": QuotaBuckets(),
        "sleep": sleeps if sleeps is not None else Sleeps(),
    }
    settings.update(kwargs)
    auth = OAuthUserAuth(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, token_uri=fake.token_uri)
    return GoogleCalendarConnector(auth, **settings)


def workspace_connector(
    fake: FakeGoogleCalendar,
    key: ServiceAccountKey,
    sleeps: Sleeps | None = None,
    subject: str | None = None,
    **kwargs: Any,
) -> GoogleWorkspaceConnector:
    trusted = fake.add_service_account(key)
    settings: dict[str, Any] = {
        "api_base_url": fake.base_url,
        "credentials_name": "google-workspace",
        "timeout": 0.5,
        "max_retries": 3,
        "quotas": NO_QUOTA,
        "buckets": QuotaBuckets(),
        "sleep": sleeps if sleeps is not None else Sleeps(),
    }
    settings.update(kwargs)
    return GoogleWorkspaceConnector(ServiceAccountAuth(trusted.info, subject=subject), **settings)


@pytest.fixture
def conn(fake: FakeGoogleCalendar, sleeps: Sleeps) -> Iterator[GoogleCalendarConnector]:
    connector = oauth_connector(fake, sleeps)
    yield connector
    connector.close()


def creates(n: int, prefix: str = "bulk") -> list[Op]:
    return [
        Op(i, OpKind.CREATE, f"{prefix}-{i}", sample_event(f"J-{prefix}-{i}", hour=i % 20))
        for i in range(n)
    ]


# --- the shared contract, with both kinds of credentials ----------------------------------------


class TestGoogleContract(ConnectorContract):
    @pytest.fixture(params=["oauth", "workspace"])
    def connector(
        self,
        request: pytest.FixtureRequest,
        fake: FakeGoogleCalendar,
        service_account_key: ServiceAccountKey,
    ) -> Iterator[GoogleCalendarConnector]:
        if request.param == "oauth":
            connector = oauth_connector(fake)
        else:
            # Only a calendar's owner may touch it: the contract passes only by impersonation.
            fake.owner_only = True
            connector = workspace_connector(fake, service_account_key)
        yield connector
        connector.close()
        assert fake.violations == []

    @pytest.fixture
    def calendar_id(self) -> str:
        return TECH

    @pytest.fixture
    def plant_foreign(self, fake: FakeGoogleCalendar) -> Callable[[str, datetime, datetime], str]:
        return lambda calendar_id, start, end: fake.plant_event(calendar_id, start, end)


# --- content and ids ---------------------------------------------------------------------------


def test_event_id_is_base32hex_of_the_key() -> None:
    first = event_id_for("appt-17/binding-3/gen-1")
    assert re.fullmatch(r"[a-v0-9]{52}", first)
    assert event_id_for("appt-17/binding-3/gen-1") == first
    assert event_id_for("appt-17/binding-3/gen-2") != first


def test_read_round_trips_every_field_exactly(conn: GoogleCalendarConnector) -> None:
    long_notes = "Gate code 4411; dog in yard. " * 80  # > 2000 chars: split across properties
    event = replace(
        sample_event("J-full"),
        status="tentative",
        details=(("notes", long_notes), ("customer_phone", "+1 214 555 0100"), ("é", "ü")),
        categories=("AC repair", "emergency"),
    )
    ref = conn.create(TECH, "key-full", event)
    found = conn.read(TECH, ref.remote_id)
    assert found is not None and found.event == event
    assert found.event.start.utcoffset() == timedelta(hours=-6)

    shorter = replace(event, details=(("notes", "short"),), lat=None, lon=None, location="")
    new_ref = conn.update(TECH, ref, shorter)
    again = conn.read(TECH, ref.remote_id)
    assert again is not None and again.event == shorter and again.ref == new_ref


def test_times_are_sent_in_the_technicians_zone_with_its_name(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    start = datetime(2027, 3, 14, 9, 0, tzinfo=CHICAGO)
    event = replace(sample_event("J-tz"), start=start, end=start + timedelta(hours=1))
    conn.create(TECH, "key-tz", event)
    [insert] = [r for r in fake.writes() if r.method == "POST"]
    assert insert.body["start"] == {
        "dateTime": "2027-03-14T09:00:00-05:00",
        "timeZone": CHICAGO.key,
    }
    assert insert.body["transparency"] == "opaque"
    assert insert.body["extendedProperties"]["private"][STAMP_KEY] == "J-tz"


def test_event_that_does_not_fit_extended_properties_is_permanent(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    huge = replace(sample_event("J-huge"), details=(("notes", "x" * 40_000),))
    with pytest.raises(PermanentError, match="extended properties"):
        conn.create(TECH, "key-huge", huge)
    assert fake.http_requests == 0
    with pytest.raises(Exception, match="time zone"):
        event_body(replace(sample_event("J-tz"), timezone="Mars/Olympus"))


# --- bulk --------------------------------------------------------------------------------------


def test_bulk_push_of_200_creates_uses_at_most_5_http_requests(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    results = conn.push(TECH, creates(200))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert [r.item for r in results] == list(range(200))
    assert len(fake.events(TECH)) == 200
    assert fake.http_requests <= 5  # one token request and four batches of 50
    assert fake.batch_sizes == [50, 50, 50, 50]
    assert conn.http_requests == fake.http_requests
    assert conn.api_requests / 200 <= 0.1


def test_push_mixes_batched_and_read_first_ops(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    kept = conn.create(TECH, "key-keep", sample_event("J-keep"))
    gone = conn.create(TECH, "key-gone", sample_event("J-gone", hour=11))
    unrecorded = conn.create(TECH, "key-unrecorded", sample_event("J-unrec", hour=13))
    foreign = fake.plant_event(TECH, datetime(2026, 12, 1, 15, tzinfo=CHICAGO),
                               datetime(2026, 12, 1, 16, tzinfo=CHICAGO))  # fmt: skip
    results = conn.push(
        TECH,
        [
            Op(1, OpKind.UPDATE, "key-keep", replace(sample_event("J-keep"), summary="v2"), kept),
            Op(2, OpKind.DELETE, "key-gone", ref=gone),
            Op(3, OpKind.DELETE, "key-unrecorded"),  # the create's ref was never recorded
            Op(4, OpKind.DELETE, "key-never-created"),
            Op(5, OpKind.DELETE, "x", ref=RemoteRef(foreign)),
            Op(6, OpKind.CREATE, "key-new", sample_event("J-new", hour=17)),
        ],
    )
    by_item = {r.item: r for r in results}
    assert [r.item for r in results] == [1, 2, 3, 4, 5, 6]
    assert by_item[1].ok and by_item[1].ref is not None and by_item[1].ref.etag != kept.etag
    assert by_item[2].ok and by_item[3].ok and by_item[4].ok and by_item[6].ok
    assert isinstance(by_item[5].error, NotOwnedError)
    live = {e.id for e in fake.events(TECH)}
    assert kept.remote_id in live and foreign in live
    assert gone.remote_id not in live and unrecorded.remote_id not in live


def test_push_deleting_an_already_deleted_event_is_done(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    ref = conn.create(TECH, "key-twice", sample_event("J-twice"))
    conn.delete(TECH, ref)
    [result] = conn.push(TECH, [Op(1, OpKind.DELETE, "key-twice", ref=ref)])
    assert result.ok
    statuses = [(r.method, r.part) for r in fake.requests if r.method == "DELETE"]
    assert statuses == [("DELETE", False), ("DELETE", True)]


def test_batch_412_is_reconciled_outside_the_batch_and_respects_ownership(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    ours = conn.create(TECH, "key-a", sample_event("J-a"))
    taken = conn.create(TECH, "key-b", sample_event("J-b", hour=11))
    fake.tamper(TECH, ours.remote_id, summary="edited by hand")
    # Someone copied the event and stripped our stamp: it is no longer ours to overwrite.
    fake.tamper(TECH, taken.remote_id, extendedProperties={"private": {STAMP_KEY: None}})
    results = conn.push(
        TECH,
        [
            Op(1, OpKind.UPDATE, "key-a", replace(sample_event("J-a"), summary="ours"), ours),
            Op(2, OpKind.UPDATE, "key-b", replace(sample_event("J-b"), summary="ours"), taken),
        ],
    )
    assert results[0].ok, results[0].error
    assert isinstance(results[1].error, NotOwnedError)
    stored_a = fake.event(TECH, ours.remote_id)
    stored_b = fake.event(TECH, taken.remote_id)
    assert stored_a is not None and stored_a.resource["summary"] == "ours"
    assert stored_b is not None and stored_b.resource["summary"] != "ours"
    patches = [(r.part, r.headers.get("if-match")) for r in fake.requests if r.method == "PATCH"]
    assert patches[0] == (True, ours.etag) and patches[-1][0] is False


def test_update_with_a_stale_etag_of_a_foreign_event_is_not_owned(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    ref = conn.create(TECH, "key-steal", sample_event("J-steal"))
    fake.tamper(TECH, ref.remote_id, extendedProperties={"private": {STAMP_KEY: None}})
    [result] = conn.push(TECH, [Op(1, OpKind.UPDATE, "key-steal", sample_event("J-steal"), ref)])
    assert isinstance(result.error, NotOwnedError)
    # The single-op path re-reads after the 412 too, and refuses the same way.
    single = conn.apply_one(TECH, Op(2, OpKind.UPDATE, "key-steal", sample_event("J-steal"), ref))
    assert isinstance(single.error, NotOwnedError)
    with pytest.raises(NotOwnedError):
        conn.delete(TECH, ref)
    stored = fake.event(TECH, ref.remote_id)
    assert stored is not None and STAMP_KEY not in stored.private and not stored.cancelled


# --- idempotent create -------------------------------------------------------------------------


def test_retried_create_after_a_lost_reply_makes_no_duplicate(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    fake.inject(Fault(kind="drop", after=True, method="POST", path_contains="/events"))
    event = sample_event("J-lost")
    ref = conn.create(TECH, "key-lost", event)
    [stored] = fake.events(TECH)
    assert stored.id == ref.remote_id == event_id_for("key-lost")
    inserts = [r for r in fake.requests if r.method == "POST"]
    assert len(inserts) == 2  # the lost one, then the retry that met 409 duplicate
    found = conn.read(TECH, ref.remote_id)
    assert found is not None and found.event == event and found.ref == ref


def test_retried_create_with_newer_content_patches_the_existing_event(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    conn.create(TECH, "key-newer", sample_event("J-newer"))
    newer = replace(sample_event("J-newer"), summary="rescheduled")
    ref = conn.create(TECH, "key-newer", newer)
    found = conn.read(TECH, ref.remote_id)
    assert found is not None and found.event == newer
    assert len(fake.events(TECH)) == 1


def test_lost_batch_reply_makes_no_duplicates(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    fake.inject(Fault(kind="drop", after=True, path_contains="/batch"))
    results = conn.push(TECH, creates(5, "lost-batch"))
    assert all(r.ok for r in results), [r.error for r in results]
    assert len(fake.events(TECH)) == 5
    assert {r.ref.remote_id for r in results if r.ref} == {e.id for e in fake.events(TECH)}


def test_create_whose_id_is_taken_by_a_foreign_event_is_not_owned(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    event_id = event_id_for("key-squatted")
    with fake.lock:
        fake._store_new(
            TECH,
            event_id,
            {
                "summary": "not ours",
                "start": {"dateTime": "2026-12-01T09:00:00-06:00"},
                "end": {"dateTime": "2026-12-01T10:00:00-06:00"},
            },
            "someone@example.com",
        )
    with pytest.raises(NotOwnedError):
        conn.create(TECH, "key-squatted", sample_event("J-squat"))


# --- errors and backoff ------------------------------------------------------------------------


def test_403_rate_limit_backs_off_then_succeeds(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, sleeps: Sleeps
) -> None:
    fake.inject(rate_limited(times=2, method="POST"))
    ref = conn.create(TECH, "key-rl", sample_event("J-rl"))
    assert ref.remote_id and len(sleeps) == 2
    assert len(fake.events(TECH)) == 1


def test_403_rate_limit_that_persists_is_rate_limited_error(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, sleeps: Sleeps
) -> None:
    fake.inject(
        Fault(status=403, reason="userRateLimitExceeded", message="User Rate Limit", times=9)
    )
    with pytest.raises(RateLimitedError) as caught:
        conn.create(TECH, "key-rl2", sample_event("J-rl2"))
    assert caught.value.status == 403 and len(sleeps) == 3


def test_429_honours_retry_after(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, sleeps: Sleeps
) -> None:
    fake.inject(Fault(status=429, reason="rateLimitExceeded", retry_after="7", method="POST"))
    conn.create(TECH, "key-429", sample_event("J-429"))
    assert len(sleeps) == 1 and sleeps[0] >= 7 * backoff_scale()


def test_other_403_is_permanent_with_googles_message(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, sleeps: Sleeps
) -> None:
    fake.owner_only = True
    fake.share(TECH, DISPATCHER, "reader")
    with pytest.raises(PermanentError) as caught:
        conn.create(TECH, "key-ro", sample_event("J-ro"))
    assert type(caught.value) is PermanentError and caught.value.status == 403
    assert "You need to have writer access to this calendar." in str(caught.value)
    assert sleeps == []


def test_batch_parts_rate_limited_are_sent_again_in_a_new_batch(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, sleeps: Sleeps
) -> None:
    fake.inject(rate_limited(part=True, times=3))
    fake.inject(Fault(status=503, part=True, retry_after="2", times=1))
    results = conn.push(TECH, creates(10, "part-rl"))
    assert all(r.ok for r in results), [r.error for r in results]
    assert fake.batch_sizes == [10, 4]
    assert len(sleeps) == 1 and sleeps[0] >= 2 * backoff_scale()
    assert len(fake.events(TECH)) == 10


def test_batch_part_that_stays_rate_limited_reports_rate_limited(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    ref = conn.create(TECH, "key-429-upd", sample_event("J-upd"))
    # Only the insert part is throttled, on the first send and on all three retries.
    throttled = Fault(
        status=429, reason="rateLimitExceeded", part=True, retry_after="1", method="POST", times=4
    )
    fake.inject(throttled)
    [create] = creates(1, "part-429")
    update = Op(1, OpKind.UPDATE, "key-429-upd", replace(sample_event("J-upd"), summary="v2"), ref)
    results = conn.push(TECH, [create, update])
    assert isinstance(results[0].error, RateLimitedError)
    assert results[0].error.retry_after == 1.0 and results[0].error.status == 429
    assert results[1].ok
    assert fake.batch_sizes == [2, 1, 1, 1]


def test_other_403_inside_a_batch_is_permanent(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    message = "Shared properties can only be changed by the organizer of the event."
    fake.inject(Fault(status=403, reason="forbiddenForNonOrganizer", message=message, part=True))
    results = conn.push(TECH, creates(2, "part-403"))
    error = results[0].error
    assert type(error) is PermanentError and message in str(error)
    assert results[1].ok and fake.batch_sizes == [2]


def test_server_errors_and_dropped_connections_are_retried(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, sleeps: Sleeps
) -> None:
    fake.inject(Fault(status=500, times=1, method="POST"))
    fake.inject(Fault(kind="drop", times=1, method="POST"))
    fake.inject(Fault(status=503, times=1, method="POST"))
    conn.create(TECH, "key-5xx", sample_event("J-5xx"))
    assert len(sleeps) == 3 and len(fake.events(TECH)) == 1


def test_server_errors_that_persist_are_transient(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    fake.inject(Fault(status=503, times=10, message="Backend Error"))
    with pytest.raises(TransientError, match="Backend Error") as caught:
        conn.create(TECH, "key-503", sample_event("J-503"))
    assert not isinstance(caught.value, RateLimitedError)


def test_timeouts_are_retried(fake: FakeGoogleCalendar, sleeps: Sleeps) -> None:
    conn = oauth_connector(fake, sleeps, timeout=0.2)
    fake.inject(Fault(kind="delay", seconds=0.6, method="GET"))
    conn.create(TECH, "key-slow", sample_event("J-slow"))
    found = conn.read(TECH, event_id_for("key-slow"))
    assert found is not None and found.job_id == "J-slow"
    assert len(sleeps) == 1
    conn.close()


def test_timeouts_that_persist_are_transient(fake: FakeGoogleCalendar) -> None:
    conn = oauth_connector(fake, timeout=0.1, max_retries=1)
    conn.read(TECH, "warm-up-the-token")
    fake.inject(Fault(kind="delay", seconds=0.4, method="GET", times=2))
    with pytest.raises(TransientError, match="Timeout"):
        conn.read(TECH, "whatever")
    conn.close()


# --- credentials -------------------------------------------------------------------------------


def test_invalid_grant_asks_ops_to_reauthorize_naming_the_block(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    fake.invalid_grant = True
    with pytest.raises(AuthError) as caught:
        conn.create(TECH, "key-auth", sample_event("J-auth"))
    text = str(caught.value)
    assert "re-authorize" in text.lower() and "google-dispatch" in text
    assert "invalid_grant" in text
    assert REFRESH_TOKEN not in text and CLIENT_SECRET not in text
    # The refusal is remembered: a whole push does not hammer the token endpoint.
    results = conn.push(TECH, creates(3, "auth"))
    assert all(isinstance(r.error, AuthError) for r in results)
    assert fake.token_requests == 1 and fake.events(TECH) == []


def test_invalid_grant_for_a_service_account_names_delegation(
    fake: FakeGoogleCalendar, service_account_key: ServiceAccountKey
) -> None:
    conn = workspace_connector(fake, service_account_key)
    fake.invalid_grant = True
    with pytest.raises(AuthError) as caught:
        conn.read(TECH, "anything")
    text = str(caught.value)
    assert "google-workspace" in text and TECH in text and "re-authorize" in text
    assert "delegation" in text and "PRIVATE KEY" not in text
    conn.close()


def test_wrong_client_secret_is_an_auth_error_without_the_secret(fake: FakeGoogleCalendar) -> None:
    auth = OAuthUserAuth(CLIENT_ID, "wrong-secret-value", REFRESH_TOKEN, token_uri=fake.token_uri)
    conn = GoogleCalendarConnector(auth, api_base_url=fake.base_url, buckets=QuotaBuckets())
    with pytest.raises(AuthError) as caught:
        conn.read(TECH, "anything")
    assert "invalid_client" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value) and REFRESH_TOKEN not in str(caught.value)
    assert "wrong-secret-value" not in repr(auth) and REFRESH_TOKEN not in repr(auth)
    conn.close()


def test_expired_token_is_refreshed_once_then_the_call_succeeds(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    conn.create(TECH, "key-t1", sample_event("J-t1"))
    assert fake.token_requests == 1
    fake.expire_tokens()
    conn.create(TECH, "key-t2", sample_event("J-t2", hour=11))
    assert fake.token_requests == 2
    assert [r.method for r in fake.requests] == ["POST", "POST", "POST"]  # one 401, one retry
    # Inside a batch every part comes back 401: one refresh, the parts go once more.
    fake.expire_tokens()
    results = conn.push(TECH, creates(3, "t3"))
    assert all(r.ok for r in results), [r.error for r in results]
    assert fake.token_requests == 3 and len(fake.events(TECH)) == 5


def test_token_that_stays_refused_is_an_auth_error(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    conn.read(TECH, "warm-up")
    fake.inject(Fault(status=401, reason="authError", message="Invalid Credentials", times=2))
    with pytest.raises(AuthError, match="still refused"):
        conn.read(TECH, "again")
    assert fake.token_requests == 2


def test_secrets_never_appear_in_error_text(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    conn.read(TECH, "warm-up")
    token = next(iter(fake.access_tokens))
    echo = f"bad request from Bearer {token} with refresh_token={REFRESH_TOKEN} {CLIENT_SECRET}"
    fake.inject(Fault(status=400, reason="invalid", message=echo))
    fake.inject(Fault(status=400, reason="invalid", message=echo, part=True))
    with pytest.raises(PermanentError) as caught:
        conn.create(TECH, "key-echo", sample_event("J-echo"))
    [result] = conn.push(TECH, creates(1, "echo"))
    for error in (caught.value, result.error):
        text = str(error)
        assert "bad request" in text
        assert token not in text and REFRESH_TOKEN not in text and CLIENT_SECRET not in text


# --- writes never notify anyone ----------------------------------------------------------------


def test_every_write_sends_updates_to_nobody_and_no_attendees(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar
) -> None:
    ref = conn.create(TECH, "key-w1", sample_event("J-w1"))
    # A human invited the customer by hand: our update must leave attendees alone, not add any.
    fake.tamper(TECH, ref.remote_id, attendees=[{"email": "customer@example.com"}])
    [updated] = conn.push(TECH, [Op(1, OpKind.UPDATE, "key-w1", sample_event("J-w1"), ref)])
    assert updated.ok, updated.error
    conn.push(TECH, creates(3, "w"))
    conn.delete(TECH, conn.create(TECH, "key-w2", sample_event("J-w2")))
    writes = fake.writes()
    api_writes = [w for w in writes if "/events" in w.path]
    assert len(api_writes) >= 6
    for write in api_writes:
        assert write.query.get("sendUpdates") == ["none"], write
        assert not (isinstance(write.body, dict) and "attendees" in write.body)
    assert fake.violations == []
    stored = fake.event(TECH, ref.remote_id)
    assert stored is not None and stored.resource["attendees"] == [
        {"email": "customer@example.com"}
    ]


def test_fake_refuses_a_write_that_would_notify(fake: FakeGoogleCalendar) -> None:
    # The guard above can fail: a write without sendUpdates=none is refused and recorded.
    token = fake._issue(DISPATCHER, ())["access_token"]
    body = {
        "start": {"dateTime": "2026-12-01T09:00:00Z"},
        "end": {"dateTime": "2026-12-01T10:00:00Z"},
        "attendees": [{"email": "customer@example.com"}],
    }
    response = httpx.post(
        f"{fake.base_url}calendar/v3/calendars/{TECH}/events",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert len(fake.violations) == 2 and fake.events(TECH) == []


# --- Google Workspace --------------------------------------------------------------------------


def test_workspace_impersonates_each_technician(
    fake: FakeGoogleCalendar, service_account_key: ServiceAccountKey
) -> None:
    fake.owner_only = True
    conn = workspace_connector(fake, service_account_key)
    conn.push(TECH, creates(3, "w1"))
    conn.create(TECH2, "key-w2", sample_event("J-w2"))
    conn.busy(TECH2, datetime(2026, 12, 1, tzinfo=CHICAGO), datetime(2026, 12, 2, tzinfo=CHICAGO))
    assert {r.principal for r in fake.requests if TECH in unquote(r.path)} == {TECH}
    assert {r.principal for r in fake.requests if TECH2 in unquote(r.path)} == {TECH2}
    assert fake.token_requests == 2  # one token per impersonated technician
    assert conn.platform == "google_workspace"
    conn.close()


def test_workspace_with_one_delegated_subject(
    fake: FakeGoogleCalendar, service_account_key: ServiceAccountKey
) -> None:
    fake.owner_only = True
    fake.share(TECH, DISPATCHER, "writer")
    conn = workspace_connector(fake, service_account_key, subject=DISPATCHER)
    conn.create(TECH, "key-sub", sample_event("J-sub"))
    assert {r.principal for r in fake.requests} == {DISPATCHER}
    conn.close()


def test_workspace_calendar_id_must_be_an_email_without_a_subject(
    fake: FakeGoogleCalendar, service_account_key: ServiceAccountKey
) -> None:
    conn = workspace_connector(fake, service_account_key)
    with pytest.raises(AuthError, match="delegated subject"):
        conn.create("primary", "key-p", sample_event("J-p"))
    [result] = conn.push("primary", creates(1, "p"))
    assert isinstance(result.error, AuthError)
    assert fake.http_requests == 0
    conn.close()


# --- busy time ---------------------------------------------------------------------------------


def test_busy_skips_free_and_cancelled_and_falls_back_to_freebusy(
    fake: FakeGoogleCalendar, conn: GoogleCalendarConnector
) -> None:
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    fake.plant_event(TECH, day.replace(hour=6), day.replace(hour=7), transparency="transparent")
    fake.plant_event(TECH, day.replace(hour=14), day.replace(hour=15))
    ours = conn.create(TECH, "key-busy", sample_event("J-busy"))
    conn.create(TECH, "key-off", replace(sample_event("J-off", hour=16), status="cancelled"))
    blocks = conn.busy(TECH, day, day + timedelta(days=1))
    assert [(b.start.hour, b.job_id) for b in blocks] == [(7, "J-busy"), (12, None)]  # UTC-6 => LA
    assert [b.start for b in blocks] == [
        sample_event("J-busy").start,
        day.replace(hour=14),
    ]

    # Only free/busy is shared with us: no events to list, blocks name no job.
    fake.owner_only = True
    fake.share(TECH, DISPATCHER, "freeBusyReader")
    blocks = conn.busy(TECH, day, day + timedelta(days=1))
    assert [(b.start, b.job_id) for b in blocks] == [
        (sample_event("J-busy").start, None),
        (day.replace(hour=14), None),
    ]
    assert any(r.path.endswith("/freeBusy") for r in fake.requests)
    assert ours.remote_id


def test_busy_pages_through_long_lists(
    conn: GoogleCalendarConnector, fake: FakeGoogleCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn.push(TECH, creates(30, "page"))
    original = fake._list

    def small_pages(calendar_id: str, query: Any, principal: str) -> dict[str, Any]:
        return original(calendar_id, {**query, "maxResults": ["7"]}, principal)

    monkeypatch.setattr(fake, "_list", small_pages)  # the server's page size, not the client
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    blocks = conn.busy(TECH, day - timedelta(days=1), day + timedelta(days=2))
    assert len(blocks) == 30
    assert len([r for r in fake.requests if r.method == "GET"]) == 5


# --- quotas ------------------------------------------------------------------------------------


def test_a_batch_counts_each_request_against_the_user_quota(fake: FakeGoogleCalendar) -> None:
    waits = Sleeps()
    quotas = GoogleQuotas(per_user=Quota(600, 50), per_project=Quota(10**8, 10**7))
    conn = oauth_connector(fake, waits, quotas=quotas)
    conn.push(TECH, creates(100, "quota"))
    # 50 requests fit the burst; 50 more at 10 per second is about five seconds of waiting.
    # With waits recorded instead of slept, the last caller's wait is the total delay.
    assert 4.0 <= max(waits) <= 5.5
    conn.close()


def test_quota_buckets_are_shared_by_connectors_of_one_user(fake: FakeGoogleCalendar) -> None:
    buckets = QuotaBuckets()
    waits = Sleeps()
    quotas = GoogleQuotas(per_user=Quota(60, 2), per_project=Quota(10**8, 10**7))
    first = oauth_connector(fake, waits, quotas=quotas, buckets=buckets)
    second = oauth_connector(fake, waits, quotas=quotas, buckets=buckets)
    first.read(TECH, "a")
    second.read(TECH, "b")
    assert waits == []
    second.read(TECH, "c")
    assert len(waits) == 1 and waits[0] > 0.5
    first.close()
    second.close()


# --- blocks ------------------------------------------------------------------------------------


# The standard block suite runs for these blocks in tests/test_blocks.py.


def test_oauth_block_builds_a_working_connector(fake: FakeGoogleCalendar) -> None:
    block = GoogleCalendarCredentials(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        token_uri=fake.token_uri,
        api_base_url=fake.base_url,
    )
    assert REFRESH_TOKEN not in repr(block) and CLIENT_SECRET not in str(block.model_dump())
    conn = block.connector()
    assert isinstance(conn, GoogleCalendarConnector) and conn.platform == block.platform
    ref = conn.create(TECH, "key-block", sample_event("J-block"))
    assert conn.lookup(TECH, "key-block") == ref
    conn.close()


def test_workspace_block_builds_a_working_connector(
    fake: FakeGoogleCalendar, service_account_key: ServiceAccountKey
) -> None:
    trusted = fake.add_service_account(service_account_key)
    block = GoogleWorkspaceCredentials(
        service_account_info=json.dumps(trusted.info), api_base_url=fake.base_url
    )
    assert "PRIVATE KEY" not in repr(block)
    conn = block.connector()
    assert isinstance(conn, GoogleWorkspaceConnector) and conn.platform == "google_workspace"
    conn.create(TECH, "key-wblock", sample_event("J-wblock"))
    assert {r.principal for r in fake.requests} == {TECH}
    conn.close()


def test_workspace_block_with_a_broken_key_says_so_without_quoting_it() -> None:
    secret = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc"'
    block = GoogleWorkspaceCredentials(service_account_info=secret)
    with pytest.raises(AuthError) as caught:
        block.connector()
    assert "service account JSON key" in str(caught.value) and "PRIVATE" not in str(caught.value)
    incomplete = GoogleWorkspaceCredentials(service_account_info='{"type": "service_account"}')
    with pytest.raises(AuthError, match="not a usable service account"):
        incomplete.connector().read(TECH, "x")


def test_all_errors_are_connector_errors(conn: GoogleCalendarConnector) -> None:
    # A window without a zone is the caller's bug, reported in the one exception tree.
    with pytest.raises(ConnectorError):
        conn.busy(TECH, datetime(2026, 12, 1), datetime(2026, 12, 2))
    with pytest.raises(NotFoundError):
        conn.update(TECH, RemoteRef("gone-id", '"1"'), sample_event("J-x"))
    with pytest.raises(PreconditionFailedError):
        ref = conn.create(TECH, "key-pf", sample_event("J-pf"))
        conn.update(TECH, RemoteRef(ref.remote_id, '"stale"'), sample_event("J-pf"))


def test_unique_calendar_ids_do_not_collide(fake: FakeGoogleCalendar) -> None:
    # A distinct key per generation: a re-create after a delete gets a fresh id, not a 409.
    conn = oauth_connector(fake)
    first = conn.create(TECH, "appt-1/b-1/gen-1", sample_event("J-gen"))
    conn.delete(TECH, first)
    second = conn.create(TECH, "appt-1/b-1/gen-2", sample_event("J-gen"))
    assert second.remote_id != first.remote_id
    assert [e.id for e in fake.events(TECH)] == [second.remote_id]
    conn.close()


@pytest.mark.usefixtures("prefect_harness")
def test_saved_block_builds_the_connector_for_a_binding_and_is_named_in_errors(
    fake: FakeGoogleCalendar,
) -> None:
    from prefect.cli.block import _register_blocks_in_module
    from prefect.utilities.asyncutils import run_coro_as_sync

    import blocks.google
    from fieldsync.domain import BindingView
    from tasks.connectors import connector_for

    registered = run_coro_as_sync(_register_blocks_in_module(blocks.google)) or []
    expected: set[type[Block]] = {GoogleCalendarCredentials, GoogleWorkspaceCredentials}
    assert expected <= set(registered)
    GoogleCalendarCredentials(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        token_uri=fake.token_uri,
        api_base_url=fake.base_url,
    ).save("dispatch-google", overwrite=True)
    binding = BindingView(1, "T1", "google", TECH, "fieldsync-google-calendar/dispatch-google")
    conn = connector_for(binding)
    assert isinstance(conn, GoogleCalendarConnector)
    conn.create(TECH, "key-saved", sample_event("J-saved"))
    fake.invalid_grant = True
    fake.expire_tokens()
    with pytest.raises(AuthError) as caught:
        conn.create(TECH, "key-saved-2", sample_event("J-saved-2"))
    assert "'dispatch-google'" in str(caught.value) and "re-authorize" in str(caught.value).lower()
    assert REFRESH_TOKEN not in str(caught.value)
    conn.close()
