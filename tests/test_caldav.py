"""CalDAV connector against real Radicale and Xandikos servers on loopback.

Faults (503, 429 with Retry-After, dropped connections before and after the server applied a
write, a calendar-query refused with 403, Digest auth) come from `FaultProxy`, a reverse proxy
in front of the real server; nothing in the connector is patched.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from blocks.caldav import CalDavCredentials, ICloudCalendarCredentials
from connectors.base import Op, RemoteRef
from connectors.caldav_calendar import (
    ICLOUD_SERVER,
    CalDavConnector,
    ICloudConnector,
    resource_name,
    uid_for,
)
from connectors.errors import (
    AuthError,
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
    TransientError,
)
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent
from fieldsync.ics import normalized, parse_feed, parse_vevent
from tests.caldav_servers import (
    DROP_AFTER,
    DROP_BEFORE,
    THROTTLE,
    UNAVAILABLE,
    DavServer,
    FaultProxy,
    start_radicale,
    start_xandikos,
)
from tests.contract.connector_contract import CHICAGO, ConnectorContract, sample_event

SERVERS = ["radicale", "xandikos"]
AUTH_PASSWORD = "correct-horse-battery-staple-42"


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def radicale() -> Iterator[DavServer]:
    server = start_radicale()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def xandikos() -> Iterator[DavServer]:
    server = start_xandikos()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def radicale_auth() -> Iterator[DavServer]:
    """Radicale with htpasswd (plain) auth: wrong passwords get a real 401."""
    server = start_radicale(password=AUTH_PASSWORD)
    yield server
    server.stop()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> DavServer:
    found: DavServer = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def make(upstream: str, **knobs: object) -> FaultProxy:
        proxy = FaultProxy(upstream, **knobs).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def connect(server: DavServer, base_url: str | None = None, **options: object) -> CalDavConnector:
    options.setdefault("sleep", lambda _s: None)
    return CalDavConnector(
        base_url or server.base_url,
        server.username,
        server.password,
        **options,  # type: ignore[arg-type]
    )


def plant(server: DavServer, calendar: str, start: datetime, end: datetime, rrule: str = "") -> str:
    """Someone's personal event, written by another client: no stamp, its own UID scheme."""
    uid = str(uuid.uuid4()).upper()
    fmt = "%Y%m%dT%H%M%SZ"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Apple Inc.//macOS 15.0//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{datetime.now(UTC).strftime(fmt)}",
        f"DTSTART:{start.astimezone(UTC).strftime(fmt)}",
        f"DTEND:{end.astimezone(UTC).strftime(fmt)}",
        "SUMMARY:Dentist",
        *([f"RRULE:{rrule}"] if rrule else []),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    name = f"{uid}.ics"
    response = server.put_raw(calendar, name, "\r\n".join(lines) + "\r\n", **{"If-None-Match": "*"})
    assert response.status_code in (201, 204), response.text
    return name


def server_query(server: DavServer, calendar: str, start: datetime, end: datetime) -> list[str]:
    """Resources the *server* finds in a time range (calendar-query REPORT, sent by hand)."""
    fmt = "%Y%m%dT%H%M%SZ"
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><D:getetag/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{start.astimezone(UTC).strftime(fmt)}" '
        f'end="{end.astimezone(UTC).strftime(fmt)}"/>'
        "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
    )
    with server.client() as client:
        response = client.request(
            "REPORT",
            server.calendar_url(calendar),
            content=body.encode(),
            headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"},
        )
    assert response.status_code == 207, response.text
    hrefs = re.findall(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", response.text)
    return sorted(h.rsplit("/", 1)[-1] for h in hrefs if h.endswith(".ics"))


def stored(server: DavServer, calendar: str, name: str) -> tuple[str, CalendarEvent]:
    """Raw text and decoded event of one of our resources, read past the connector."""
    response = server.get_raw(calendar, name)
    assert response.status_code == 200
    [vevent] = [e for e in parse_feed(response.content).events]
    return response.text, parse_vevent(vevent.text)


def sequence_of(text: str) -> int:
    found = re.search(r"^SEQUENCE:(\d+)", text, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def test_servers_start_quickly(radicale: DavServer, xandikos: DavServer) -> None:
    for srv in (radicale, xandikos):
        assert srv.started_in < 10, f"{srv.kind} took {srv.started_in:.1f}s"
        assert srv.version


# --- the shared contract ----------------------------------------------------------------------


class _CalDavContract(ConnectorContract):
    """Subclasses provide the `dav` fixture: the server the suite runs against."""

    @pytest.fixture
    def connector(self, dav: DavServer) -> Iterator[CalDavConnector]:
        conn = connect(dav)
        yield conn
        conn.close()

    @pytest.fixture
    def calendar_id(self, dav: DavServer) -> str:
        return dav.new_calendar()

    @pytest.fixture
    def plant_foreign(self, dav: DavServer) -> Callable[[str, datetime, datetime], str]:
        return lambda calendar, start, end: plant(dav, calendar, start, end)


class TestCalDavContractRadicale(_CalDavContract):
    @pytest.fixture
    def dav(self, radicale: DavServer) -> DavServer:
        return radicale


class TestCalDavContractXandikos(_CalDavContract):
    @pytest.fixture
    def dav(self, xandikos: DavServer) -> DavServer:
        return xandikos


# --- idempotent creates -----------------------------------------------------------------------


def test_create_whose_response_was_lost_is_retried_without_a_duplicate(
    server: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = server.new_calendar()
    proxy = proxies(server.base_url)
    conn = connect(server, proxy.url)
    event = sample_event("J-lost")
    # The PUT reaches the server and is stored; the reply never comes back.
    proxy.force(("PUT", DROP_AFTER))
    ref = conn.create(calendar, "key-lost-1", event)

    puts = [(action, status) for m, _, action, status in proxy.log if m == "PUT"]
    assert puts == [(DROP_AFTER, 201), ("pass", 412)]  # the retry met If-None-Match: *
    assert ref.remote_id == resource_name("key-lost-1")
    assert server.list_resources(calendar) == [ref.remote_id]
    text, content = stored(server, calendar, ref.remote_id)
    assert content == normalized(event)
    assert f"UID:{uid_for('key-lost-1')}" in text

    # The ledger never recorded the outcome, so the whole create runs again later.
    again = conn.create(calendar, "key-lost-1", event)
    assert again == ref
    assert server.list_resources(calendar) == [ref.remote_id]
    assert proxy.statuses("PUT")[-1] == 412  # nothing was rewritten


def test_retried_create_with_new_content_updates_the_one_event(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    event = sample_event("J-again")
    first = conn.create(calendar, "key-again-1", event)
    moved = replace(event, summary="moved", start=event.start + timedelta(hours=1))
    second = conn.create(calendar, "key-again-1", moved)
    assert second.remote_id == first.remote_id and second.etag != first.etag
    assert server.list_resources(calendar) == [first.remote_id]
    text, content = stored(server, calendar, first.remote_id)
    assert content == normalized(moved)
    assert sequence_of(text) == 1


def test_create_over_a_foreign_resource_is_not_owned(server: DavServer) -> None:
    calendar = server.new_calendar()
    start = datetime(2026, 12, 1, 12, tzinfo=UTC)
    foreign = plant(server, calendar, start, start + timedelta(hours=1))
    before = server.get_raw(calendar, foreign).text
    # A key whose resource name collides with the foreign event's.
    with pytest.raises(NotOwnedError):
        connect(server).create(calendar, foreign.removesuffix(".ics"), sample_event("J-x"))
    assert server.get_raw(calendar, foreign).text == before


def test_keys_that_are_not_url_safe_get_hashed_names(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    key = "fs-appt/42 ünï?#-b1-g0"
    ref = conn.create(calendar, key, sample_event("J-odd"))
    assert ref.remote_id.startswith("fieldsync+") and "/" not in ref.remote_id
    assert conn.lookup(calendar, key) == ref
    found = conn.read(calendar, ref.remote_id)
    assert found is not None and found.job_id == "J-odd"
    assert conn.read(calendar, "../escape.ics") is None


# --- concurrent edits -------------------------------------------------------------------------


def test_concurrent_edit_gets_412_then_reconciles(
    server: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = server.new_calendar()
    proxy = proxies(server.base_url)
    conn = connect(server, proxy.url)
    event = sample_event("J-race")
    ref = conn.create(calendar, "key-race-1", event)

    # Another client (a phone) edits our event: stamp kept, title and SEQUENCE changed.
    text = server.get_raw(calendar, ref.remote_id).text
    edited = text.replace("SEQUENCE:0", "SEQUENCE:1")
    edited = re.sub(r"SUMMARY:[^\r\n]*(\r?\n [^\r\n]*)*", "SUMMARY:edited on the phone", edited)
    assert ref.etag is not None
    answer = server.put_raw(calendar, ref.remote_id, edited, **{"If-Match": ref.etag})
    assert answer.status_code in (201, 204)

    ours = replace(event, summary="ours")
    [result] = conn.push(calendar, [Op(1, OpKind.UPDATE, "key-race-1", ours, ref)])
    assert result.ok, result.error
    assert 412 in proxy.statuses("PUT")  # the stale etag was refused by the server
    text, content = stored(server, calendar, ref.remote_id)
    assert content.summary == "ours"
    assert sequence_of(text) == 2  # above the phone's SEQUENCE, so devices take ours
    assert result.ref is not None and result.ref.etag not in (ref.etag, None)
    assert server.list_resources(calendar) == [ref.remote_id]


def test_edit_that_drops_our_stamp_is_never_overwritten(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    ref = conn.create(calendar, "key-taken-1", sample_event("J-taken"))
    text = server.get_raw(calendar, ref.remote_id).text
    taken = re.sub(r"X-FIELDSYNC-JOB-ID:[^\r\n]*\r?\n", "", text)
    assert ref.etag is not None
    assert server.put_raw(calendar, ref.remote_id, taken, **{"If-Match": ref.etag}).is_success
    after = server.get_raw(calendar, ref.remote_id).text

    ops = [
        Op(1, OpKind.UPDATE, "key-taken-1", sample_event("J-taken"), ref),
        Op(2, OpKind.DELETE, "key-taken-1", ref=ref),
    ]
    results = conn.push(calendar, ops)
    assert [type(r.error) for r in results] == [NotOwnedError, NotOwnedError]
    assert server.get_raw(calendar, ref.remote_id).text == after
    assert conn.lookup(calendar, "key-taken-1") is None


def test_update_with_unchanged_content_writes_nothing(
    server: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = server.new_calendar()
    proxy = proxies(server.base_url)
    conn = connect(server, proxy.url)
    event = sample_event("J-same")
    ref = conn.create(calendar, "key-same-1", event)
    assert conn.update(calendar, ref, event) == ref
    assert proxy.statuses("PUT") == [201]


# --- deletes ----------------------------------------------------------------------------------


def test_delete_of_missing_event_is_done_through_push(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    ref = conn.create(calendar, "key-gone-1", sample_event("J-gone"))
    with server.client() as client:  # deleted by hand on a device
        assert client.delete(server.calendar_url(calendar) + ref.remote_id).is_success
    with pytest.raises(NotFoundError):
        conn.delete(calendar, ref)
    results = conn.push(
        calendar,
        [
            Op(1, OpKind.DELETE, "key-gone-1", ref=ref),
            Op(2, OpKind.DELETE, "key-never-created"),  # no ref: found by key, or nothing
        ],
    )
    assert [r.ok for r in results] == [True, True]


def test_delete_after_a_hand_edit_still_removes_our_event(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    ref = conn.create(calendar, "key-del-edit", sample_event("J-del-edit"))
    conn.update(calendar, ref, replace(sample_event("J-del-edit"), summary="edited"))
    [result] = conn.push(calendar, [Op(1, OpKind.DELETE, "key-del-edit", ref=ref)])  # old etag
    assert result.ok, result.error
    assert server.list_resources(calendar) == []


# --- auth -------------------------------------------------------------------------------------


def test_wrong_password_is_an_auth_error_that_never_shows_it(
    radicale_auth: DavServer, caplog: pytest.LogCaptureFixture
) -> None:
    calendar = radicale_auth.new_calendar()
    wrong = "hunter2-not-the-password"
    caplog.set_level(logging.DEBUG)
    conn = CalDavConnector(radicale_auth.base_url, radicale_auth.username, wrong)
    with pytest.raises(AuthError) as caught:
        conn.create(calendar, "key-auth-1", sample_event("J-auth"))
    [result] = conn.push(calendar, [Op(1, OpKind.CREATE, "key-auth-1", sample_event("J-auth"))])
    assert isinstance(result.error, AuthError) and not result.error.retryable
    assert caught.value.status == 401
    for text in (str(caught.value), repr(caught.value), str(result.error), repr(conn), caplog.text):
        assert wrong not in text
        assert "aHVudGVyMi" not in text  # nor its Basic (base64) form
    assert radicale_auth.list_resources(calendar) == []

    icloud = ICloudConnector("tech", wrong, server_url=radicale_auth.base_url)
    with pytest.raises(AuthError, match="app-specific password"):
        icloud.lookup(calendar, "key-auth-1")

    right = CalDavConnector(radicale_auth.base_url, radicale_auth.username, AUTH_PASSWORD)
    ref = right.create(calendar, "key-auth-1", sample_event("J-auth"))
    assert radicale_auth.list_resources(calendar) == [ref.remote_id]
    assert AUTH_PASSWORD not in repr(right)


def test_digest_auth(radicale: DavServer, proxies: Callable[..., FaultProxy]) -> None:
    calendar = radicale.new_calendar()
    proxy = proxies(radicale.base_url, digest=(radicale.username, "digest-secret-9"))
    conn = CalDavConnector(
        proxy.url, radicale.username, "digest-secret-9", auth_scheme="digest", sleep=lambda _s: None
    )
    ref = conn.create(calendar, "key-digest-1", sample_event("J-digest"))
    found = conn.read(calendar, ref.remote_id)
    assert found is not None and found.job_id == "J-digest"
    assert proxy.counts()["digest_challenge"] >= 1

    bad = CalDavConnector(proxy.url, radicale.username, "digest-wrong-7", auth_scheme="digest")
    with pytest.raises(AuthError) as caught:
        bad.read(calendar, ref.remote_id)
    assert "digest-wrong-7" not in str(caught.value)


# --- time zones -------------------------------------------------------------------------------


def test_time_zones_across_dst_are_right_on_the_server(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    # Spring forward: 09:00 on 2027-03-14 in Chicago is 14:00Z (CDT), not 15:00Z (CST).
    spring = datetime(2027, 3, 14, 9, 0, tzinfo=CHICAGO)
    spring_ref = conn.create(
        calendar,
        "key-spring",
        replace(sample_event("J-spring"), start=spring, end=spring + timedelta(hours=1)),
    )
    # Fall back: 01:30 happens twice on 2026-11-01; this is the second one (CST, 07:30Z).
    second = datetime(2026, 11, 1, 1, 30, tzinfo=CHICAGO, fold=1)
    fall_ref = conn.create(
        calendar,
        "key-fall",
        replace(sample_event("J-fall"), start=second, end=second + timedelta(minutes=45)),
    )

    text = server.get_raw(calendar, spring_ref.remote_id).text
    assert "BEGIN:VTIMEZONE" in text and "TZID:America/Chicago" in text
    assert "DTSTART;TZID=America/Chicago:20270314T090000" in text

    def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(year, month, day, hour, minute, tzinfo=UTC)

    # The server's own time-range evaluation (its reading of our VTIMEZONE):
    assert server_query(server, calendar, at(2027, 3, 14, 14), at(2027, 3, 14, 14, 30)) == [
        spring_ref.remote_id
    ]
    assert server_query(server, calendar, at(2027, 3, 14, 15), at(2027, 3, 14, 16)) == []
    assert server_query(server, calendar, at(2026, 11, 1, 7, 30), at(2026, 11, 1, 8)) == [
        fall_ref.remote_id
    ]
    assert server_query(server, calendar, at(2026, 11, 1, 6), at(2026, 11, 1, 7, 29)) == []

    found = conn.read(calendar, fall_ref.remote_id)
    assert found is not None and found.event is not None
    assert found.event.start.astimezone(UTC) == at(2026, 11, 1, 7, 30)
    assert found.event.timezone == "America/Chicago"
    blocks = conn.busy(calendar, at(2026, 11, 1, 0), at(2026, 11, 2, 0))
    assert [(b.start, b.job_id) for b in blocks] == [(at(2026, 11, 1, 7, 30), "J-fall")]


def test_exact_round_trip_of_awkward_content(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    tokyo = ZoneInfo("Asia/Tokyo")
    event = CalendarEvent(
        job_id="J-42;,\\x",
        summary='Boiler, "urgent"; back\\slash — ünïcødé 🔧 ' + "long " * 30,
        start=datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=tokyo),
        end=datetime(2026, 12, 1, 10, 15, tzinfo=tokyo),
        timezone="Asia/Tokyo",
        location="1-2-3 Shibuya, Tokyo; rear door",
        description="line one\r\nline two\rline three\n\ttabbed",
        status="tentative",
        lat=35.658034,
        lon=None,
        categories=("Boiler, gas", "VIP;1"),
        details=(("notes", 'said "hi", left\\n'), ("empty", "")),
    )
    ref = conn.create(calendar, "key-awkward", event)
    found = conn.read(calendar, ref.remote_id)
    assert found is not None and found.event == normalized(event)
    assert conn.update(calendar, found.ref, event) == found.ref  # decodes as unchanged


# --- busy time --------------------------------------------------------------------------------


def test_busy_expands_recurring_foreign_events_and_skips_cancelled_ones(server: DavServer) -> None:
    calendar = server.new_calendar()
    conn = connect(server)
    first = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    plant(server, calendar, first, first + timedelta(hours=1), rrule="FREQ=DAILY;COUNT=5")
    conn.create(calendar, "key-cancelled", replace(sample_event("J-off"), status="cancelled"))
    day = datetime(2026, 12, 3, tzinfo=UTC)
    blocks = conn.busy(calendar, day, day + timedelta(days=1))
    assert [(b.start, b.end, b.job_id) for b in blocks] == [
        (first + timedelta(days=2), first + timedelta(days=2, hours=1), None)
    ]
    day1 = datetime(2026, 12, 1, tzinfo=CHICAGO)
    assert all(b.job_id != "J-off" for b in conn.busy(calendar, day1, day1 + timedelta(days=1)))
    assert conn.busy(calendar, first + timedelta(days=6), first + timedelta(days=7)) == []


def test_busy_falls_back_to_free_busy_query_when_calendar_query_is_forbidden(
    server: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = server.new_calendar()
    proxy = proxies(server.base_url, refuse=("REPORT", b"calendar-query", 403))
    conn = connect(server, proxy.url)
    ours = sample_event("J-fb", hour=8)
    conn.create(calendar, "key-fb-1", ours)
    foreign_start = datetime(2026, 12, 1, 13, 0, tzinfo=CHICAGO)
    plant(server, calendar, foreign_start, foreign_start + timedelta(minutes=30))
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    blocks = conn.busy(calendar, day, day + timedelta(days=1))
    assert proxy.counts()["refused"] == 1
    assert [(b.start, b.end) for b in blocks] == [
        (ours.start, ours.end),
        (foreign_start, foreign_start + timedelta(minutes=30)),
    ]
    assert all(b.job_id is None for b in blocks)  # free-busy cannot tell ours apart


# --- calendar ids and discovery ---------------------------------------------------------------


def test_calendar_ids_by_name_display_name_path_and_url(server: DavServer) -> None:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    display = f"Dana's jobs {uuid.uuid4().hex[:4]}"
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:set><D:prop><D:displayname>{display}</D:displayname></D:prop></D:set>"
        "</C:mkcalendar>"
    )
    with server.client() as client:
        made = client.request(
            "MKCALENDAR",
            server.calendar_url(name),
            content=body.encode(),
            headers={"Content-Type": "application/xml; charset=utf-8"},
        )
    assert made.status_code == 201, made.text
    conn = connect(server)
    ref = conn.create(name, "key-ids-1", sample_event("J-ids"))
    for calendar_id in (display, server.home + name, server.calendar_url(name)):
        assert conn.lookup(calendar_id, "key-ids-1") == ref, calendar_id

    [result] = conn.push("no-such-calendar", [Op(1, OpKind.CREATE, "k", sample_event("J-1"))])
    # Not NotFoundError: that would read as "the event is gone" and trigger re-creates.
    assert type(result.error) is PermanentError
    assert "no calendar 'no-such-calendar'" in str(result.error)


def test_credentials_never_go_to_a_calendar_url_on_another_host(
    radicale: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    elsewhere = proxies(radicale.base_url)
    conn = connect(radicale)
    with pytest.raises(PermanentError, match="credentials are not sent"):
        conn.lookup(f"{elsewhere.url}/tech/anything/", "key")
    assert elsewhere.log == []


# --- transient faults -------------------------------------------------------------------------


def test_every_event_lands_exactly_once_through_transient_faults(
    radicale: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = radicale.new_calendar()
    proxy = proxies(radicale.base_url, fault_rate=0.3, seed=20261201)
    sleeps: list[float] = []
    conn = connect(radicale, proxy.url, max_retries=12, sleep=sleeps.append)

    events = {f"key-soak-{i}": sample_event(f"J-soak-{i}", hour=6 + i % 12) for i in range(24)}
    creates = [Op(i, OpKind.CREATE, key, ev) for i, (key, ev) in enumerate(events.items())]
    results = conn.push(calendar, creates)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    refs = {op.key: r.ref for op, r in zip(creates, results, strict=True)}

    # Outcomes the ledger never recorded: the same creates run again.
    again = conn.push(calendar, creates[:8])
    assert [r.ref for r in again] == [refs[op.key] for op in creates[:8]]

    keys = list(events)
    moved = {k: replace(events[k], summary=f"moved {k}") for k in keys[8:16]}
    updates = [Op(100 + i, OpKind.UPDATE, k, moved[k], refs[k]) for i, k in enumerate(moved)]
    deletes = [Op(200 + i, OpKind.DELETE, k, ref=refs[k]) for i, k in enumerate(keys[16:20])]
    # An unrecorded create's delete: found by key.
    deletes += [Op(300 + i, OpKind.DELETE, k) for i, k in enumerate(keys[20:22])]
    results = conn.push(calendar, updates + deletes)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]

    live = {k: moved.get(k, events[k]) for k in keys[:16] + keys[22:]}
    assert radicale.list_resources(calendar) == sorted(resource_name(k) for k in live)
    for key, event in live.items():
        text, content = stored(radicale, calendar, resource_name(key))
        assert content == normalized(event)
        assert text.count("X-FIELDSYNC-JOB-ID") == 1

    counts = proxy.counts()
    for fault in (UNAVAILABLE, THROTTLE, DROP_BEFORE, DROP_AFTER):
        assert counts[fault] > 0, counts
    lost_writes = [m for m, _, action, status in proxy.log if action == DROP_AFTER and status]
    assert {"PUT", "DELETE"} & set(lost_writes), proxy.log  # applied, reply lost, retried
    assert len(sleeps) >= sum(counts[f] for f in (UNAVAILABLE, THROTTLE, DROP_BEFORE, DROP_AFTER))


def test_retry_after_is_honoured_and_persistent_outage_gives_up(
    radicale: DavServer, proxies: Callable[..., FaultProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_HTTP_BACKOFF_SCALE", "1")  # this test reads exact waits
    calendar = radicale.new_calendar()
    proxy = proxies(radicale.base_url, retry_after="7")
    sleeps: list[float] = []
    conn = connect(radicale, proxy.url, max_retries=2, sleep=sleeps.append)
    conn.lookup(calendar, "warm-up")  # discovery done before the faults
    proxy.force(("PUT", THROTTLE))
    conn.create(calendar, "key-ra-1", sample_event("J-ra"))
    assert sleeps == [7.0]

    proxy.force(*[("*", UNAVAILABLE)] * 3)
    [result] = conn.push(calendar, [Op(1, OpKind.CREATE, "key-ra-2", sample_event("J-ra2"))])
    assert isinstance(result.error, TransientError) and result.error.retryable
    assert result.error.status == 503
    assert radicale.list_resources(calendar) == [resource_name("key-ra-1")]


def test_one_calendar_is_written_one_request_at_a_time(
    radicale: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = radicale.new_calendar()
    proxy = proxies(radicale.base_url, delay=0.01)
    conn = connect(radicale, proxy.url)
    conn.lookup(calendar, "warm-up")
    proxy.max_in_flight = 0
    batches = [
        [
            Op(10 * b + i, OpKind.CREATE, f"key-par-{b}-{i}", sample_event(f"J-{b}-{i}"))
            for i in range(4)
        ]
        for b in range(3)
    ]
    results: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda ops=ops: results.extend(r.ok for r in conn.push(calendar, ops))
        )
        for ops in batches
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 12
    assert proxy.max_in_flight == 1
    assert len(radicale.list_resources(calendar)) == 12


def test_stale_etag_from_a_lost_update_reply_reconciles(
    radicale: DavServer, proxies: Callable[..., FaultProxy]
) -> None:
    calendar = radicale.new_calendar()
    proxy = proxies(radicale.base_url)
    conn = connect(radicale, proxy.url)
    event = sample_event("J-lost-upd")
    ref = conn.create(calendar, "key-lost-upd", event)
    proxy.force(("PUT", DROP_AFTER))  # the update lands; its reply (new etag) is lost
    moved = replace(event, summary="moved")
    [result] = conn.push(calendar, [Op(1, OpKind.UPDATE, "key-lost-upd", moved, ref)])
    assert result.ok, result.error
    # retried PUT -> 412 (our own write changed the etag) -> re-read -> already ours: no write
    puts = [(action, status) for m, _, action, status in proxy.log if m == "PUT"]
    assert [action for action, _ in puts] == ["pass", DROP_AFTER, "pass"]
    assert puts[-1][1] == 412
    text, content = stored(radicale, calendar, ref.remote_id)
    assert content.summary == "moved" and sequence_of(text) == 1


def test_direct_update_with_stale_etag_raises(radicale: DavServer) -> None:
    calendar = radicale.new_calendar()
    conn = connect(radicale)
    ref = conn.create(calendar, "key-st", sample_event("J-st"))
    conn.update(calendar, ref, replace(sample_event("J-st"), summary="one"))
    with pytest.raises(PreconditionFailedError) as caught:
        conn.update(calendar, ref, replace(sample_event("J-st"), summary="two"))
    assert caught.value.status == 412


# --- blocks -----------------------------------------------------------------------------------

# The standard block suite runs for these blocks in tests/test_blocks.py.


def test_blocks_build_connectors_and_keep_secrets(radicale_auth: DavServer) -> None:
    icloud = ICloudCalendarCredentials(
        apple_id="dana@example.com", app_specific_password=SecretStr("abcd-efgh-ijkl-mnop")
    )
    assert icloud.server_url == ICLOUD_SERVER
    conn = icloud.connector()
    assert isinstance(conn, ICloudConnector) and conn.platform == icloud.platform == "icloud"
    assert conn.max_parallel_calendars == 2
    for text in (repr(icloud), str(icloud.model_dump()), repr(conn)):
        assert "abcd-efgh" not in text

    generic = CalDavCredentials(
        server_url=radicale_auth.base_url,
        username=radicale_auth.username,
        password=SecretStr(AUTH_PASSWORD),
    )
    conn2 = generic.connector()
    assert isinstance(conn2, CalDavConnector) and conn2.platform == generic.platform == "caldav"
    assert AUTH_PASSWORD not in repr(generic) and AUTH_PASSWORD not in str(generic.model_dump())
    calendar = radicale_auth.new_calendar()
    ref = conn2.create(calendar, "key-block-1", sample_event("J-block"))
    assert conn2.lookup(calendar, "key-block-1") == ref
    conn2.close()


def test_bad_server_urls_are_refused() -> None:
    with pytest.raises(PermanentError):
        CalDavConnector("ftp://example.com/", "u", "p")
    with pytest.raises(PermanentError):
        CalDavConnector("not a url", "u", "p")
    icloud = ICloudConnector("a@b.c", "x")
    assert icloud.server_url == httpx.URL(ICLOUD_SERVER)
    icloud.close()


def test_remote_ref_for_missing_event_is_not_found(radicale: DavServer) -> None:
    calendar = radicale.new_calendar()
    conn = connect(radicale)
    with pytest.raises(NotFoundError):
        conn.update(calendar, RemoteRef("../../other/x.ics"), sample_event("J-1"))
