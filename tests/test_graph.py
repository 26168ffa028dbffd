"""The Microsoft Graph connector against a stateful fake of Entra ID + Graph on loopback TLS."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from blocks.microsoft import MicrosoftGraphCredentials
from connectors.base import Op, OpResult, RemoteRef
from connectors.errors import (
    AuthError,
    NotOwnedError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from connectors.graph import (
    DATA_PROPERTY,
    JOB_PROPERTY,
    KEY_PROPERTY,
    GraphCredentials,
    MicrosoftGraphConnector,
    parse_calendar_id,
    transaction_id,
)
from connectors.http import ConcurrencyLimit, backoff_scale
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent
from tests.contract.connector_contract import CHICAGO, ConnectorContract, sample_event
from tests.fakes.graph import FakeGraph, client_certificate, tls_material

MAILBOX = "tech1@contoso.com"
SECOND = "AAMkCal-second-calendar"
THIRD = "AAMkCal-third-calendar"


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph(certificate=client_certificate()) as server:
        server.add_mailbox(MAILBOX, SECOND, THIRD)
        yield server


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def build(
    fake: FakeGraph,
    *,
    secret: str | None = None,
    name: str = "graph-test",
    timeout: float = 5.0,
    sleep: Callable[[float], None] | None = None,
    **kwargs: Any,
) -> MicrosoftGraphConnector:
    credentials = GraphCredentials(
        fake.tenant_id,
        fake.client_id,
        client_secret=secret or fake.client_secret,
        authority_host=fake.base_url,
        name=name,
    )
    http = httpx.Client(verify=tls_material().client_context(), timeout=timeout)
    return MicrosoftGraphConnector(
        credentials,
        api_base_url=fake.api_base_url,
        http_client=http,
        sleep=sleep if sleep is not None else Sleeps(),
        **kwargs,
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def conn(fake: FakeGraph, sleeps: Sleeps) -> Iterator[MicrosoftGraphConnector]:
    connector = build(fake, sleep=sleeps)
    yield connector
    connector._http.close()


def creates(n: int, prefix: str = "bulk", day: int = 1) -> list[Op]:
    ops = []
    for i in range(n):
        start = datetime(2026, 12, day, 7, 0, tzinfo=CHICAGO) + timedelta(minutes=15 * i)
        event = replace(
            sample_event(f"J-{prefix}-{i}"), start=start, end=start + timedelta(minutes=10)
        )
        ops.append(Op(i, OpKind.CREATE, f"key-{prefix}-{i}", event))
    return ops


def refs_of(results: list[OpResult]) -> list[RemoteRef]:
    refs = [r.ref for r in results if r.ok and r.ref is not None]
    assert len(refs) == len(results), [r.error for r in results if not r.ok]
    return refs


def is_post_events(method: str, path: str) -> bool:
    return method == "POST" and path.endswith("/events")


# --- the shared contract, on the default calendar and on a second calendar ---------------------


class TestGraphContract(ConnectorContract):
    @pytest.fixture
    def connector(self, conn: MicrosoftGraphConnector) -> MicrosoftGraphConnector:
        return conn

    @pytest.fixture
    def calendar_id(self) -> str:
        return MAILBOX

    @pytest.fixture
    def plant_foreign(self, fake: FakeGraph) -> Callable[[str, datetime, datetime], str]:
        def plant(calendar_id: str, start: datetime, end: datetime) -> str:
            mailbox, calendar = parse_calendar_id(calendar_id)
            return fake.plant_foreign(mailbox, start, end, calendar_id=calendar)

        return plant


class TestGraphContractSecondCalendar(TestGraphContract):
    """Free/busy covers only the default calendar: ours here come from the calendarView."""

    @pytest.fixture
    def calendar_id(self) -> str:
        return f"{MAILBOX}/{SECOND}"


# --- bulk ----------------------------------------------------------------------------------------


def test_bulk_creates_use_batches_of_twenty(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    ops = creates(200)
    results = conn.push(MAILBOX, ops)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert len({r.ref.remote_id for r in results if r.ref}) == 200
    assert len(fake.events(MAILBOX)) == 200
    # First creates need no lookup: exactly 10 batches of 20.
    assert fake.batch_requests == 10
    assert fake.graph_requests == 10
    assert conn.graph_requests == fake.graph_requests
    assert conn.graph_requests / len(ops) <= 0.1


def test_fake_rejects_batches_over_twenty(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    conn.read(MAILBOX, "AAMk-warm-up-token")
    token = conn.auth.headers()["Authorization"]
    requests = [
        {"id": str(i), "method": "GET", "url": f"/users/{MAILBOX}/calendar/events"}
        for i in range(21)
    ]
    resp = conn._http.post(
        f"{fake.api_base_url}/$batch",
        json={"requests": requests},
        headers={"Authorization": token},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BadRequest"


def test_push_mixes_creates_updates_and_deletes(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    refs = refs_of(conn.push(MAILBOX, creates(5)))
    foreign = fake.plant_foreign(
        MAILBOX,
        datetime(2026, 12, 1, 12, tzinfo=CHICAGO),
        datetime(2026, 12, 1, 13, tzinfo=CHICAGO),
    )
    ops = [
        Op(
            10,
            OpKind.UPDATE,
            "key-bulk-0",
            replace(sample_event("J-bulk-0"), summary="moved"),
            refs[0],
        ),
        Op(11, OpKind.DELETE, "key-bulk-1", ref=refs[1]),
        Op(12, OpKind.DELETE, "key-bulk-2", ref=RemoteRef(refs[2].remote_id)),  # no etag
        Op(13, OpKind.DELETE, "key-x", ref=RemoteRef(foreign)),
        Op(14, OpKind.UPDATE, "key-y", sample_event("J-y"), RemoteRef(foreign)),
        Op(15, OpKind.DELETE, "key-gone", ref=RemoteRef("AAMkAGI2-gone-AAA=", 'W/"x"')),
        *creates(2, prefix="more"),
    ]
    results = {r.item: r for r in conn.push(MAILBOX, ops)}
    assert results[10].ok and results[11].ok and results[12].ok and results[15].ok
    assert isinstance(results[13].error, NotOwnedError)
    assert isinstance(results[14].error, NotOwnedError)
    assert results[0].ok and results[1].ok  # the two new creates
    ev = fake.event(MAILBOX, refs[0].remote_id)
    assert ev is not None and ev.fields["subject"] == "moved"
    assert fake.event(MAILBOX, refs[1].remote_id) is None
    assert fake.event(MAILBOX, foreign) is not None
    assert fake.event(MAILBOX, foreign).fields["subject"] == "Dentist"  # type: ignore[union-attr]


def test_batch_412_is_reconciled_and_lost_delete_is_done(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    refs = refs_of(conn.push(MAILBOX, creates(3)))
    fake.tamper(MAILBOX, refs[0].remote_id, "edited in Outlook")
    fake.tamper(MAILBOX, refs[1].remote_id, "edited in Outlook")
    results = conn.push(
        MAILBOX,
        [
            Op(1, OpKind.UPDATE, "k0", replace(sample_event("J-bulk-0"), summary="ours"), refs[0]),
            Op(2, OpKind.DELETE, "k1", ref=refs[1]),
        ],
    )
    assert all(r.ok for r in results), [r.error for r in results]
    ev = fake.event(MAILBOX, refs[0].remote_id)
    assert ev is not None and ev.fields["subject"] == "ours"
    assert fake.event(MAILBOX, refs[1].remote_id) is None


# --- idempotent creates ------------------------------------------------------------------------


def test_create_retried_after_lost_response_makes_one_event(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    fake.drop_next(after_commit=True, match=is_post_events)
    ref = conn.create(MAILBOX, "key-lost-1", sample_event("J-lost"))
    posts = [entry for entry in fake.log if entry[0] == "POST"]
    assert len(posts) == 2  # the first landed, its answer was lost; Graph deduped the second
    [event] = fake.events(MAILBOX)
    assert event.id == ref.remote_id
    assert event.transaction_id == transaction_id("key-lost-1")


def test_batch_retried_after_lost_response_makes_no_duplicates(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    fake.drop_next(after_commit=True, match=lambda method, path: path.endswith("$batch"))
    results = conn.push(MAILBOX, creates(30))
    assert all(r.ok for r in results)
    assert fake.batch_requests == 3  # two batches, the first sent twice
    assert len(fake.events(MAILBOX)) == 30
    assert {r.ref.remote_id for r in results if r.ref} == {e.id for e in fake.events(MAILBOX)}


def test_create_after_a_crash_finds_the_event_instead_of_repeating_it(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    """The ledger lost the outcome and Graph's transactionId memory is gone too (days later):
    the key stamped on the event still finds it, in bulk and singly."""
    [first] = conn.push(MAILBOX, creates(1))
    fake.transactions.clear()
    [op] = creates(1)
    assert op.event is not None
    # The executor marks it a retry: the ledger holds an attempt whose outcome was never seen.
    moved = replace(op, event=replace(op.event, summary="rescheduled"), retry=True)
    [again] = conn.push(MAILBOX, [moved])
    assert again.ok and again.ref is not None and first.ref is not None
    assert again.ref.remote_id == first.ref.remote_id
    [event] = fake.events(MAILBOX)
    assert event.fields["subject"] == "rescheduled"

    single = conn.create(MAILBOX, "key-bulk-0", sample_event("J-bulk-0"))
    assert single.remote_id == first.ref.remote_id
    assert len(fake.events(MAILBOX)) == 1


def test_lookup_matches_keys_exactly(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    conn.create(MAILBOX, "Key-Case-1", sample_event("J-case"))
    assert conn.lookup(MAILBOX, "key-case-1") is None  # Graph matched it case-insensitively
    assert conn.lookup(MAILBOX, "Key-Case-1") is not None


# --- throttling and faults -------------------------------------------------------------------


def test_throttled_sub_responses_are_retried_after_retry_after(
    fake: FakeGraph, conn: MicrosoftGraphConnector, sleeps: Sleeps
) -> None:
    fake.fail_next_sub(429, times=7, retry_after=3, code="ApplicationThrottled")
    fake.fail_next_sub(503, times=2)
    results = conn.push(MAILBOX, creates(20))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len(fake.events(MAILBOX)) == 20
    assert fake.batch_requests >= 2
    assert sleeps and max(sleeps) >= 3 * backoff_scale()  # Retry-After is a floor


def test_sub_responses_throttled_for_good_become_rate_limited_errors(
    fake: FakeGraph, sleeps: Sleeps
) -> None:
    conn = build(fake, sleep=sleeps, max_retries=1)
    fake.fail_next_sub(429, times=100, retry_after=7)
    results = conn.push(MAILBOX, creates(3))
    assert all(isinstance(r.error, RateLimitedError) for r in results)
    assert results[0].error.retry_after == 7  # type: ignore[union-attr]
    assert fake.events(MAILBOX) == []


def test_top_level_faults_are_retried(fake: FakeGraph, sleeps: Sleeps) -> None:
    conn = build(fake, sleep=sleeps, timeout=0.3)
    ref = conn.create(MAILBOX, "key-f-1", sample_event("J-f"))
    fake.fail_next(503, retry_after=2)
    fake.fail_next(429, retry_after=1, code="ApplicationThrottled")
    fake.drop_next(after_commit=False)
    new = conn.update(MAILBOX, ref, replace(sample_event("J-f"), summary="after faults"))
    assert new.remote_id == ref.remote_id and new.etag != ref.etag
    # Retry-After is a floor for the backoff (every wait is scaled down in tests).
    assert sleeps[:2] == [pytest.approx(2 * backoff_scale()), pytest.approx(backoff_scale())]
    ev = fake.event(MAILBOX, ref.remote_id)
    assert ev is not None and ev.fields["subject"] == "after faults"
    assert [m for m, _, _ in fake.log].count("PATCH") == 1  # only the last attempt got through


def test_timed_out_batch_that_landed_is_reconciled(fake: FakeGraph) -> None:
    """The batch's PATCH lands after the client gave up; the resent one meets a new etag
    (412), so the event is re-read, found still ours, and written with our content."""
    conn = build(fake, sleep=lambda seconds: time.sleep(0.3), timeout=0.3)
    ref = conn.create(MAILBOX, "key-t-1", sample_event("J-t"))
    fake.delay_next(0.4, match=lambda method, path: path.endswith("$batch"))
    update = Op(1, OpKind.UPDATE, "key-t-1", replace(sample_event("J-t"), summary="t"), ref)
    [result] = conn.push(MAILBOX, [update])
    assert result.ok, result.error
    patches = [status for method, _, status in fake.log if method == "PATCH"]
    assert patches == [200, 412, 200]
    ev = fake.event(MAILBOX, ref.remote_id)
    assert ev is not None and ev.fields["subject"] == "t"
    assert result.ref is not None and result.ref.etag == ev.etag


def test_full_mailbox_is_not_retried(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    fake.fail_next(
        507, code="ErrorQuotaExceeded", message="The mailbox is full.", match=is_post_events
    )
    with pytest.raises(PermanentError, match="ErrorQuotaExceeded"):
        conn.create(MAILBOX, "key-q-1", sample_event("J-q"))
    assert fake.graph_requests == 2  # the key lookup and one POST, not repeated
    assert fake.events(MAILBOX) == []


def test_token_endpoint_outage_is_transient(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    fake.fail_next_token(503)
    with pytest.raises(TransientError) as caught:
        conn.read(MAILBOX, "AAMk-x")
    assert not isinstance(caught.value, AuthError)
    assert fake.graph_requests == 0


def test_missing_mailbox_is_an_error_not_a_finished_delete(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    [result] = conn.push(
        "nobody@contoso.com", [Op(1, OpKind.DELETE, "k", ref=RemoteRef("AAMkAGI2-x-AAA=", "e"))]
    )
    assert isinstance(result.error, PermanentError)
    assert "ErrorInvalidUser" in str(result.error)


def test_malformed_calendar_id_fails_every_op(conn: MicrosoftGraphConnector) -> None:
    results = conn.push("bad id/", creates(2))
    assert all(isinstance(r.error, PermanentError) for r in results)


# --- concurrency per mailbox ---------------------------------------------------------------------


def test_parallel_pushes_to_one_mailbox_stay_within_four_requests(fake: FakeGraph) -> None:
    fake.latency = 0.003
    conn = build(fake)
    calendars = [MAILBOX, f"{MAILBOX}/{SECOND}", f"{MAILBOX}/{THIRD}"]

    def singles() -> list[bool]:
        return [
            conn.create(MAILBOX, f"key-single-{i}", sample_event(f"J-s{i}", hour=20)) is not None
            for i in range(6)
        ]

    with ThreadPoolExecutor(6) as pool:
        bulk = [
            pool.submit(conn.push, cal, creates(40, prefix=f"c{n}"))
            for n, cal in enumerate(calendars)
        ]
        single = [pool.submit(singles) for _ in range(3)]
        results = [r for f in bulk for r in f.result()]
        assert all(all(f.result()) for f in single)
    assert all(r.ok for r in results)
    assert len(fake.events(MAILBOX)) == 3 * 40 + 6
    assert fake.max_concurrency[MAILBOX] <= 4
    assert fake.throttled_for_concurrency == 0


def test_fake_notices_more_than_four_concurrent_requests(fake: FakeGraph) -> None:
    """The check above can fail: without the limit the fake sees (and throttles) more."""
    fake.latency = 0.02
    conn = build(fake, mailbox_limit=ConcurrencyLimit(16))

    def read(i: int) -> None:
        with contextlib.suppress(RateLimitedError):  # retries without sleeping may run out
            conn.read(MAILBOX, f"AAMk-none-{i}")

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(read, range(10)))
    assert fake.max_concurrency[MAILBOX] > 4
    assert fake.throttled_for_concurrency > 0


# --- tokens ------------------------------------------------------------------------------------


def test_token_is_cached(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    for i in range(5):
        conn.read(MAILBOX, f"AAMk-none-{i}")
    assert fake.token_requests == 1
    assert fake.discovery_requests == 1


def test_token_is_renewed_before_it_expires(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    fake.token_ttl = 240  # under msal's five-minute margin: every token is already "expiring"
    for i in range(3):
        conn.read(MAILBOX, f"AAMk-none-{i}")
    assert fake.token_requests == 3
    assert fake.unauthorized == 0


def test_expired_token_is_refreshed_once(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    ref = conn.create(MAILBOX, "key-exp-1", sample_event("J-exp"))
    fake.expire_tokens()
    assert conn.read(MAILBOX, ref.remote_id) is not None
    assert fake.unauthorized == 1
    assert fake.token_requests == 2
    # Still refused with a brand-new token: one refresh, then AuthError.
    fake.refuse_tokens = True
    with pytest.raises(AuthError, match="still refused"):
        conn.read(MAILBOX, ref.remote_id)
    assert fake.token_requests == 3


def test_parallel_401s_refresh_the_token_once(fake: FakeGraph) -> None:
    conn = build(fake)
    conn.read(MAILBOX, "AAMk-warm")
    fake.expire_tokens()
    fake.latency = 0.01
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: conn.read(MAILBOX, f"AAMk-none-{i}"), range(4)))
    assert fake.token_requests == 2


def test_invalid_client_secret_is_an_auth_error_without_the_secret(
    fake: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng~Secret.Value_ab12cd34ef56"
    caplog.set_level(logging.DEBUG)
    conn = build(fake, secret=wrong, name="contoso-graph")
    with pytest.raises(AuthError) as caught:
        conn.create(MAILBOX, "key-auth-1", sample_event("J-auth"))
    text = str(caught.value)
    assert "contoso-graph" in text and "AADSTS7000215" in text and "invalid_client" in text
    assert "Trace ID" not in text
    for where in (text, repr(conn), repr(conn.credentials), caplog.text):
        assert wrong not in where
    assert fake.graph_requests == 0
    # The same result from push: every op fails with the auth error, nothing written.
    results = conn.push(MAILBOX, creates(2))
    assert all(isinstance(r.error, AuthError) for r in results)
    assert fake.events(MAILBOX) == []


def test_unknown_tenant_is_an_auth_error(fake: FakeGraph) -> None:
    http = httpx.Client(verify=tls_material().client_context(), timeout=5)
    creds = GraphCredentials(
        "not-our-tenant",
        fake.client_id,
        client_secret="s3cret-value",
        authority_host=fake.base_url,
        name="typo-tenant",
    )
    conn = MicrosoftGraphConnector(creds, api_base_url=fake.api_base_url, http_client=http)
    with pytest.raises(AuthError, match="typo-tenant"):
        conn.read(MAILBOX, "AAMk-x")


def test_certificate_credentials(fake: FakeGraph) -> None:
    cert = client_certificate()
    http = httpx.Client(verify=tls_material().client_context(), timeout=5)
    creds = GraphCredentials(
        fake.tenant_id,
        fake.client_id,
        certificate_private_key=cert.private_key_pem,
        certificate_thumbprint=cert.thumbprint,
        authority_host=fake.base_url,
        name="cert-block",
    )
    conn = MicrosoftGraphConnector(creds, api_base_url=fake.api_base_url, http_client=http)
    assert conn.create(MAILBOX, "key-cert-1", sample_event("J-cert")).remote_id
    assert "PRIVATE KEY" not in repr(creds)

    wrong = GraphCredentials(
        fake.tenant_id,
        fake.client_id,
        certificate_private_key=cert.private_key_pem,
        certificate_thumbprint="00" * 20,
        authority_host=fake.base_url,
        name="cert-block",
    )
    bad = MicrosoftGraphConnector(wrong, api_base_url=fake.api_base_url, http_client=http)
    with pytest.raises(AuthError, match="cert-block") as caught:
        bad.read(MAILBOX, "AAMk-x")
    assert "PRIVATE KEY" not in str(caught.value)


# --- content --------------------------------------------------------------------------------


def test_never_any_attendees(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    ref = conn.create(MAILBOX, "key-att-1", sample_event("J-att"))
    conn.update(MAILBOX, ref, replace(sample_event("J-att"), summary="changed"))
    conn.push(MAILBOX, creates(5))
    assert fake.attendee_writes == 0
    assert fake.events(MAILBOX) and all(e.attendees == [] for e in fake.events(MAILBOX))
    assert all(
        "attendees" not in e.fields or e.fields["attendees"] == [] for e in fake.events(MAILBOX)
    )


def test_what_outlook_stores(fake: FakeGraph, conn: MicrosoftGraphConnector) -> None:
    event = replace(sample_event("J-map"), status="tentative")
    ref = conn.create(MAILBOX, "key-map-1", event)
    stored = fake.event(MAILBOX, ref.remote_id)
    assert stored is not None
    f = stored.fields
    assert f["subject"] == event.summary
    assert f["body"] == {"contentType": "text", "content": event.description}
    assert f["location"]["displayName"] == event.location
    assert f["location"]["coordinates"] == {"latitude": 32.7812, "longitude": -96.7994}
    assert f["showAs"] == "tentative"
    assert f["categories"] == ["AC repair", "normal"]
    assert f["isReminderOn"] is True and f["reminderMinutesBeforeStart"] == 15
    assert f["start"] == {"dateTime": "2026-12-01T09:00:00", "timeZone": "America/Chicago"}
    assert stored.props[JOB_PROPERTY] == "J-map"
    assert stored.props[KEY_PROPERTY] == "key-map-1"
    assert '"tz":"America/Chicago"' in stored.props[DATA_PROPERTY]
    found = conn.read(MAILBOX, ref.remote_id)
    assert found is not None and found.event == event

    cancelled = replace(event, status="cancelled")
    conn.update(MAILBOX, ref, cancelled)
    stored = fake.event(MAILBOX, ref.remote_id)
    assert stored is not None
    assert stored.fields["showAs"] == "free" and stored.fields["isReminderOn"] is False
    found = conn.read(MAILBOX, ref.remote_id)
    assert found is not None and found.event == cancelled
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    assert conn.busy(MAILBOX, day, day + timedelta(days=1)) == []  # cancelled: not busy


def roundtrip(conn: MicrosoftGraphConnector, event: CalendarEvent, key: str) -> CalendarEvent:
    ref = conn.create(MAILBOX, key, event)
    found = conn.read(MAILBOX, ref.remote_id)
    assert found is not None and found.event is not None
    return found.event


def test_explicit_time_zones_across_dst_changes(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    # Spring forward (2027-03-14, 02:00 -> 03:00): 01:00-04:00 local lasts two hours.
    start = datetime(2027, 3, 14, 1, 0, tzinfo=CHICAGO)
    spanning = replace(sample_event("J-spring"), start=start, end=start.replace(hour=4))
    back = roundtrip(conn, spanning, "key-spring")
    assert back == spanning
    assert back.end.astimezone(UTC) - back.start.astimezone(UTC) == timedelta(hours=2)
    [stored] = [e for e in fake.events(MAILBOX) if e.props[JOB_PROPERTY] == "J-spring"]
    assert stored.fields["start"] == {
        "dateTime": "2027-03-14T01:00:00",
        "timeZone": "America/Chicago",
    }
    assert stored.fields["end"] == {
        "dateTime": "2027-03-14T04:00:00",
        "timeZone": "America/Chicago",
    }
    assert stored.start == datetime(2027, 3, 14, 7, 0, tzinfo=UTC)
    assert stored.end == datetime(2027, 3, 14, 9, 0, tzinfo=UTC)

    # Fall back (2026-11-01): 01:30 happens twice; the second one must stay the second one.
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=CHICAGO)
    later = replace(sample_event("J-fall"), start=second, end=second + timedelta(minutes=30))
    back = roundtrip(conn, later, "key-fall")
    assert back.start.astimezone(UTC) == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
    assert back.timezone == "America/Chicago"
    [stored] = [e for e in fake.events(MAILBOX) if e.props[JOB_PROPERTY] == "J-fall"]
    assert stored.fields["start"]["timeZone"] == "UTC"  # the wall time alone is ambiguous

    # A technician in Berlin: same rules, different zone.
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2027, 3, 28, 9, 0, tzinfo=berlin)  # the EU change day
    eu = replace(
        sample_event("J-eu", tz="Europe/Berlin"), start=start, end=start + timedelta(hours=1)
    )
    back = roundtrip(conn, eu, "key-eu")
    assert back.start.astimezone(UTC) == datetime(2027, 3, 28, 7, 0, tzinfo=UTC)
    assert back.timezone == "Europe/Berlin"


def test_busy_marks_ours_even_when_times_coincide(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    ours = sample_event("J-same", hour=10)
    conn.create(MAILBOX, "key-same", ours)
    fake.plant_foreign(MAILBOX, ours.start, ours.end)  # exactly the same slot
    fake.plant_foreign(MAILBOX, ours.start, ours.end, show_as="free")  # not busy at all
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    blocks = conn.busy(MAILBOX, day, day + timedelta(days=1))
    assert sorted((b.job_id or "") for b in blocks) == ["", "J-same"]


def test_busy_over_more_than_42_days_is_split(
    fake: FakeGraph, conn: MicrosoftGraphConnector
) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    long_one = start + timedelta(days=41, hours=23)  # crosses the first window's end
    fake.plant_foreign(MAILBOX, long_one, long_one + timedelta(hours=3))
    fake.plant_foreign(MAILBOX, start + timedelta(days=80), start + timedelta(days=80, hours=1))
    blocks = conn.busy(MAILBOX, start, start + timedelta(days=90))
    assert [b.start for b in blocks] == [long_one, start + timedelta(days=80)]
    schedules = [e for e in fake.log if e[1].endswith("getSchedule")]
    assert len(schedules) == 3


# --- the block ---------------------------------------------------------------------------------


# The standard block suite runs for this block in tests/test_blocks.py.


def test_block_slug_and_platform() -> None:
    assert MicrosoftGraphCredentials.__dict__["_block_type_slug"].startswith("fieldsync-")
    assert MicrosoftGraphCredentials.platform == "outlook"


def test_block_needs_exactly_one_credential() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        MicrosoftGraphCredentials(tenant_id="t", client_id="c")
    with pytest.raises(ValidationError, match="exactly one"):
        MicrosoftGraphCredentials(
            tenant_id="t",
            client_id="c",
            client_secret="s",
            certificate_private_key="k",
            certificate_thumbprint="AB",
        )
    with pytest.raises(ValidationError, match="thumbprint"):
        MicrosoftGraphCredentials(tenant_id="t", client_id="c", certificate_private_key="k")


def test_block_builds_connector_and_hides_secret() -> None:
    secret = "block~secret-value-987654"
    block = MicrosoftGraphCredentials(
        tenant_id="tenant-guid",
        client_id="client-guid",
        client_secret=secret,
        authority_host="https://127.0.0.1:1",
        api_base_url="https://127.0.0.1:1/v1.0",
    )
    assert secret not in repr(block) and secret not in str(block.model_dump())
    conn = block.connector()
    try:
        assert isinstance(conn, MicrosoftGraphConnector)
        assert conn.api_base_url == "https://127.0.0.1:1/v1.0"
        assert conn.credentials.client_secret == secret
        assert conn.credentials.authority_host == "https://127.0.0.1:1"
        assert secret not in repr(conn) and secret not in repr(conn.credentials)
    finally:
        conn.close()


@pytest.mark.usefixtures("prefect_harness")
def test_loaded_block_names_itself_in_errors_and_keeps_the_secret() -> None:
    secret = "saved~secret-value-24680"
    MicrosoftGraphCredentials(
        tenant_id="tenant-guid", client_id="client-guid", client_secret=secret
    ).save("test-graph", overwrite=True)
    loaded = MicrosoftGraphCredentials.load("test-graph")
    assert isinstance(loaded, MicrosoftGraphCredentials)
    credentials = loaded.credentials()
    assert credentials.name == "test-graph"
    assert credentials.client_secret == secret
    assert secret not in repr(loaded)
