from __future__ import annotations

import io
import json
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from dateutil import tz as dateutil_tz
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Op, RemoteRef
from connectors.errors import (
    NotFoundError,
    NotOwnedError,
    PermanentError,
    PreconditionFailedError,
)
from connectors.ics_feed import IcsFeedConnector, clear_cache, uid_for
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent
from fieldsync.ics import (
    FeedEvent,
    build_feed,
    fold,
    normalized,
    parse_feed,
    parse_vevent,
    render_vevent,
)
from tests.contract.connector_contract import CHICAGO, ConnectorContract, sample_event

BERLIN = ZoneInfo("Europe/Berlin")
CAL = "tech-1"
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


class Clock:
    """A settable clock, so DTSTAMP values are predictable."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def hand_edit(path: Path, component: str) -> None:
    """Append a component to the feed the way someone editing the file by hand would."""
    text = (
        path.read_bytes().decode()
        if path.exists()
        else ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hand//EN\r\nEND:VCALENDAR\r\n")
    )
    head, end, tail = text.rpartition("END:VCALENDAR")
    assert end, "not a calendar"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((head + component + end + tail).encode())


def foreign_vevent(uid: str, start: datetime, end: datetime, **extra: str) -> str:
    zone = getattr(start.tzinfo, "key", None)
    if zone:
        times = (
            f"DTSTART;TZID={zone}:{start:%Y%m%dT%H%M%S}\r\n"
            f"DTEND;TZID={zone}:{end.astimezone(start.tzinfo):%Y%m%dT%H%M%S}\r\n"
        )
    else:
        times = (
            f"DTSTART:{start.astimezone(UTC):%Y%m%dT%H%M%SZ}\r\n"
            f"DTEND:{end.astimezone(UTC):%Y%m%dT%H%M%SZ}\r\n"
        )
    lines = "".join(f"{k.replace('_', '-')}:{v}\r\n" for k, v in extra.items())
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{times}"
        f"SUMMARY:Dentist\r\n{lines}END:VEVENT\r\n"
    )


def feed_path(connector: IcsFeedConnector, calendar_id: str = CAL) -> Path:
    return connector.path_for(calendar_id)


def parsed(
    connector: IcsFeedConnector, calendar_id: str = CAL
) -> Any:  # icalendar values are wide unions
    return icalendar.Calendar.from_ical(feed_path(connector, calendar_id).read_bytes())


def vevents(connector: IcsFeedConnector, calendar_id: str = CAL) -> dict[str, Any]:
    return {str(e["UID"]): e for e in parsed(connector, calendar_id).walk("VEVENT")}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ics(tmp_path: Path, clock: Clock) -> IcsFeedConnector:
    return IcsFeedConnector(tmp_path / "feeds", {CAL: "Dana Whitfield"}, clock=clock)


class TestIcsContract(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> IcsFeedConnector:
        return IcsFeedConnector(tmp_path / "feeds", {CAL: "Dana Whitfield"})

    @pytest.fixture
    def calendar_id(self) -> str:
        return CAL

    @pytest.fixture
    def plant_foreign(
        self, connector: IcsFeedConnector
    ) -> Callable[[str, datetime, datetime], str]:
        def plant(calendar_id: str, start: datetime, end: datetime) -> str:
            uid = f"foreign-{uuid.uuid4().hex[:12]}@example.com"
            hand_edit(connector.path_for(calendar_id), foreign_vevent(uid, start, end))
            return uid

        return plant


# --- identity, SEQUENCE and cancellation -----------------------------------------------------


def test_uid_is_stable_and_sequence_increments(ics: IcsFeedConnector, clock: Clock) -> None:
    event = sample_event("J-seq")
    ref = ics.create(CAL, "key-seq", event)
    assert ref == RemoteRef(uid_for("key-seq"), "0")
    clock.now += timedelta(minutes=5)
    ref1 = ics.update(CAL, ref, replace(event, summary="first change"))
    clock.now += timedelta(minutes=5)
    ref2 = ics.update(CAL, ref1, replace(event, summary="second change"))
    assert (ref1.etag, ref2.etag) == ("1", "2")
    assert ref.remote_id == ref1.remote_id == ref2.remote_id == "key-seq@fieldsync"
    found = vevents(ics)
    assert list(found) == ["key-seq@fieldsync"]
    only = found["key-seq@fieldsync"]
    assert int(only["SEQUENCE"]) == 2
    assert str(only["SUMMARY"]) == "second change"
    assert only.decoded("DTSTAMP") == clock.now
    assert only.decoded("LAST-MODIFIED") == clock.now
    assert only.decoded("CREATED") == NOW  # first write, kept


def test_retried_create_is_an_upsert(ics: IcsFeedConnector) -> None:
    event = sample_event("J-retry")
    first = ics.create(CAL, "key-retry", event)
    before = feed_path(ics).stat().st_mtime_ns
    assert ics.create(CAL, "key-retry", event) == first
    assert feed_path(ics).stat().st_mtime_ns == before  # identical content: no write
    moved = replace(event, summary="changed meanwhile")
    third = ics.create(CAL, "key-retry", moved)
    assert third == RemoteRef(first.remote_id, "1")
    found = vevents(ics)
    assert len(found) == 1 and str(found[first.remote_id]["SUMMARY"]) == "changed meanwhile"


def test_delete_cancels_with_higher_sequence_and_keeps_the_event(
    ics: IcsFeedConnector,
) -> None:
    event = sample_event("J-cancel", hour=8)
    ref = ics.create(CAL, "key-cancel", event)
    ref = ics.update(CAL, ref, replace(event, summary="moved"))
    ics.delete(CAL, ref)
    found = vevents(ics)[ref.remote_id]
    assert str(found["STATUS"]) == "CANCELLED"
    assert int(found["SEQUENCE"]) == 2
    assert str(found["TRANSP"]) == "TRANSPARENT"
    assert str(found["SUMMARY"]) == "moved"  # content kept, so devices can match it
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    assert ics.busy(CAL, day, day + timedelta(days=1)) == []
    with pytest.raises(NotFoundError):
        ics.delete(CAL, RemoteRef(ref.remote_id, "2"))


def test_delete_with_stale_etag_is_a_precondition_failure(ics: IcsFeedConnector) -> None:
    ref = ics.create(CAL, "key-del-stale", sample_event("J-ds"))
    ics.update(CAL, ref, replace(sample_event("J-ds"), summary="x"))
    with pytest.raises(PreconditionFailedError):
        ics.delete(CAL, ref)
    assert str(vevents(ics)[ref.remote_id]["STATUS"]) == "CONFIRMED"


def test_status_maps_to_ical_status(ics: IcsFeedConnector) -> None:
    ics.create(CAL, "key-tent", replace(sample_event("J-t"), status="tentative"))
    ics.create(CAL, "key-conf", sample_event("J-c", hour=11))
    found = vevents(ics)
    assert str(found["key-tent@fieldsync"]["STATUS"]) == "TENTATIVE"
    assert str(found["key-conf@fieldsync"]["STATUS"]) == "CONFIRMED"
    read = ics.read(CAL, "key-tent@fieldsync")
    assert read is not None and read.event is not None and read.event.status == "tentative"


# --- time zones ------------------------------------------------------------------------------


def _samples(zone: ZoneInfo, years: range) -> list[datetime]:
    """Noon UTC every day, plus every 15 minutes within 3 hours of each transition."""
    day = datetime(years.start, 1, 1, 12, tzinfo=UTC)
    stop = datetime(years.stop, 1, 1, tzinfo=UTC)
    out = []
    while day < stop:
        out.append(day)
        if (
            day.astimezone(zone).utcoffset()
            != (day + timedelta(days=1)).astimezone(zone).utcoffset()
        ):
            out += [day + timedelta(minutes=15 * i) for i in range(1, 24 * 4)]
        day += timedelta(days=1)
    return out


def _offsets_match(vtimezone: Any, zone: ZoneInfo, years: range) -> None:
    """Read the VTIMEZONE as RFC 5545 clients would, never via its IANA name, and compare it
    with zoneinfo both ways: UTC -> local, and local wall time -> UTC."""
    text = vtimezone.to_ical().decode()
    calendar = f"BEGIN:VCALENDAR\r\n{text}END:VCALENDAR\r\n"
    client = dateutil_tz.tzical(io.StringIO(calendar)).get()
    renamed = icalendar.Timezone.from_ical(text.replace(f"TZID:{zone.key}", "TZID:Client View"))
    assert isinstance(renamed, icalendar.Timezone)
    icalendar_view = renamed.to_tz(lookup_tzid=False)
    assert not isinstance(icalendar_view, ZoneInfo)
    samples = _samples(zone, years)
    assert len(samples) > 365 * len(years) + 2 * len(years) * 90  # DST changes were sampled
    for moment in samples:
        expected = moment.astimezone(zone).utcoffset()
        assert moment.astimezone(client).utcoffset() == expected, (zone.key, moment)
        assert moment.astimezone(icalendar_view).utcoffset() == expected, (zone.key, moment)
        wall = moment.astimezone(zone).replace(tzinfo=None, fold=0)
        if wall.replace(tzinfo=zone).utcoffset() == expected:  # not the repeated hour
            assert wall.replace(tzinfo=client).utcoffset() == expected, (zone.key, wall)


def test_vtimezones_are_present_and_right_across_dst(ics: IcsFeedConnector) -> None:
    before = datetime(2027, 3, 13, 9, 0, tzinfo=CHICAGO)  # CST, UTC-6
    after = datetime(2027, 3, 15, 9, 0, tzinfo=CHICAGO)  # CDT, UTC-5
    berlin = datetime(2027, 3, 29, 9, 0, tzinfo=BERLIN)  # CEST, a day after Berlin's change
    for key, start, tz in (
        ("k-before", before, "America/Chicago"),
        ("k-after", after, "America/Chicago"),
        ("k-berlin", berlin, "Europe/Berlin"),
    ):
        event = replace(sample_event(key, tz=tz), start=start, end=start + timedelta(hours=1))
        ics.create(CAL, key, event)

    text = feed_path(ics).read_text()
    assert "DTSTART;TZID=America/Chicago:20270313T090000" in text
    assert "DTSTART;TZID=America/Chicago:20270315T090000" in text
    assert "DTSTART;TZID=Europe/Berlin:20270329T090000" in text
    calendar = parsed(ics)
    zones = {str(tz["TZID"]): tz for tz in calendar.walk("VTIMEZONE")}
    assert set(zones) == {"America/Chicago", "Europe/Berlin"}
    _offsets_match(zones["America/Chicago"], CHICAGO, range(2026, 2029))
    _offsets_match(zones["Europe/Berlin"], BERLIN, range(2026, 2029))
    assert calendar.get_missing_tzids() == set()
    found = {str(e["UID"]): e.decoded("DTSTART") for e in calendar.walk("VEVENT")}
    assert found["k-before@fieldsync"].astimezone(UTC) == datetime(2027, 3, 13, 15, tzinfo=UTC)
    assert found["k-after@fieldsync"].astimezone(UTC) == datetime(2027, 3, 15, 14, tzinfo=UTC)
    assert found["k-berlin@fieldsync"].astimezone(UTC) == datetime(2027, 3, 29, 7, tzinfo=UTC)


def test_repeated_hour_at_fall_back_round_trips(ics: IcsFeedConnector) -> None:
    # 2026-11-01 01:30 happens twice in Chicago; a TZID local time would mean the first one.
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=CHICAGO)
    assert second.astimezone(UTC) == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)
    event = replace(sample_event("J-fold"), start=second, end=second + timedelta(minutes=20))
    ref = ics.create(CAL, "key-fold", event)
    found = ics.read(CAL, ref.remote_id)
    assert found is not None and found.event is not None
    assert found.event.start.astimezone(UTC) == second.astimezone(UTC)
    assert found.event.timezone == "America/Chicago"
    clear_cache()  # decoded from the file, not from what we remember writing
    found = ics.read(CAL, ref.remote_id)
    assert found is not None and found.event is not None
    assert found.event.start.astimezone(UTC) == second.astimezone(UTC)
    start = vevents(ics)[ref.remote_id].decoded("DTSTART")
    assert start.astimezone(UTC) == second.astimezone(UTC)


# --- content ---------------------------------------------------------------------------------


def test_job_details_appear_in_description_location_and_geo(ics: IcsFeedConnector) -> None:
    event = sample_event("J-details")
    ref = ics.create(CAL, "key-details", event)
    found = vevents(ics)[ref.remote_id]
    assert str(found["DESCRIPTION"]) == event.description
    assert "Materials: R-410A x2, capacitor" in str(found["DESCRIPTION"])
    assert "Notes: gate code 4411" in str(found["DESCRIPTION"])
    assert str(found["LOCATION"]) == "1201 Elm St, Dallas, TX 75270"
    assert (found["GEO"].latitude, found["GEO"].longitude) == (32.7812, -96.7994)
    assert [str(c) for c in found["CATEGORIES"].cats] == ["AC repair", "normal"]
    assert str(found["X-FIELDSYNC-JOB-ID"]) == "J-details"
    raw = feed_path(ics).read_text()
    assert "X-FIELDSYNC-DETAILS:" in raw
    back = ics.read(CAL, ref.remote_id)
    assert back is not None and back.event == event


def _tricky_events() -> list[CalendarEvent]:
    base = sample_event("J-tricky")
    return [
        base,
        replace(
            base,
            summary="Büro; Kältetechnik, \\n not a newline \\ 🎉" + "x" * 120,
            location="Straße 5; Hof, hinten",
            description="line 1\nline 2\n\n\ttabbed, ; \\ end\\",
            categories=("a,b", "c;d", "e\\f", ""),
            details=(("notes", 'quote " and , and \\n'), ("k", "ünï"), ("k", "dup")),
        ),
        replace(base, lat=None, lon=None, categories=(), details=(), location="", description=""),
        replace(base, lat=1e-07, lon=None),
        replace(base, lat=None, lon=-179.99999999),
        replace(base, timezone="UTC"),
        replace(base, timezone="Asia/Kolkata", status="cancelled"),
        replace(base, summary="", job_id="J,with;odd\\chars"),
    ]


@pytest.mark.parametrize("event", _tricky_events())
def test_vevent_round_trip_is_exact(event: CalendarEvent) -> None:
    text = render_vevent(event, uid="u,1;x@fieldsync", sequence=3, dtstamp=NOW)
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    back = parse_vevent(text)
    assert back == event
    assert back.content_hash() == event.content_hash()
    assert (
        back.start.utcoffset()
        == event.start.astimezone(
            ZoneInfo("UTC" if event.timezone == "UTC" else event.timezone)
        ).utcoffset()
    )
    # The index read on load agrees with what was rendered.
    [indexed] = parse_feed(
        build_feed(
            [FeedEvent.ours(event, uid="u,1;x@fieldsync", sequence=3, dtstamp=NOW)], name="n"
        )[0]
    ).events
    assert (indexed.uid, indexed.job_id, indexed.sequence) == ("u,1;x@fieldsync", event.job_id, 3)
    assert indexed.decode() == event


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r")
    | st.sampled_from(["\n", "\t", ",", ";", "\\", ":", '"']),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    summary=_text,
    location=_text,
    description=_text,
    categories=st.lists(_text, max_size=3),
    details=st.lists(st.tuples(_text, _text), max_size=3),
    lat=st.none() | st.floats(-90, 90),
    lon=st.none() | st.floats(-180, 180),
    minutes=st.integers(0, 60 * 24 * 365 * 3),
    tz=st.sampled_from(["America/Chicago", "Europe/Berlin", "UTC", "Australia/Lord_Howe"]),
)
def test_vevent_round_trip_property(
    summary: str,
    location: str,
    description: str,
    categories: list[str],
    details: list[tuple[str, str]],
    lat: float | None,
    lon: float | None,
    minutes: int,
    tz: str,
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    event = CalendarEvent(
        job_id="J-prop",
        summary=summary,
        start=start,
        end=start + timedelta(minutes=45),
        timezone=tz,
        location=location,
        description=description,
        lat=lat,
        lon=lon,
        categories=tuple(categories),
        details=tuple(details),
    )
    back = parse_vevent(render_vevent(event, uid="p@fieldsync", sequence=0, dtstamp=NOW))
    assert back == event
    assert back.start.astimezone(UTC) == start  # the instant, not just the wall time
    assert back == normalized(event)


def test_fold_never_splits_a_character() -> None:
    line = "DESCRIPTION:" + "é🎉" * 60
    folded = fold(line)
    parts = folded.split("\r\n")
    assert len(parts) > 1
    assert all(len(p.encode()) <= 75 for p in parts)
    assert parts[0] + "".join(p[1:] for p in parts[1:]) == line


# --- foreign content -------------------------------------------------------------------------

FOREIGN = (
    "BEGIN:VEVENT\r\n"
    "UID:dentist-42@example.com\r\n"
    "DTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=My Local Zone:20261201T120000\r\n"
    "DTEND;TZID=My Local Zone:20261201T130000\r\n"
    "SUMMARY:Dentist\\, Dr. Who\r\n"
    "DESCRIPTION:A long hand-written description that is folded exactly where th\r\n"
    " e editor chose to fold it\\, and should stay that way.\r\n"
    "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r\n"
    "BEGIN:VALARM\r\n"
    "ACTION:DISPLAY\r\n"
    "TRIGGER:-PT15M\r\n"
    "DESCRIPTION:Reminder\r\n"
    "END:VALARM\r\n"
    "END:VEVENT\r\n"
)
FOREIGN_TZ = (
    "BEGIN:VTIMEZONE\r\n"
    "TZID:My Local Zone\r\n"
    "BEGIN:STANDARD\r\n"
    "DTSTART:19700101T000000\r\n"
    "TZOFFSETFROM:-0600\r\n"
    "TZOFFSETTO:-0600\r\n"
    "END:STANDARD\r\n"
    "END:VTIMEZONE\r\n"
)
FOREIGN_TODO = "BEGIN:VTODO\r\nUID:todo-1@example.com\r\nSUMMARY:Buy filters\r\nEND:VTODO\r\n"


def test_foreign_components_survive_our_writes_unchanged(ics: IcsFeedConnector) -> None:
    ref = ics.create(CAL, "key-f0", sample_event("J-f0"))
    hand_edit(feed_path(ics), FOREIGN_TZ + FOREIGN + FOREIGN_TODO)
    ref = ics.update(CAL, ref, replace(sample_event("J-f0"), summary="ours moved"))
    ics.create(CAL, "key-f1", sample_event("J-f1", hour=14))
    ics.delete(CAL, ref)
    text = feed_path(ics).read_bytes().decode()
    assert FOREIGN in text
    assert FOREIGN_TZ in text
    assert FOREIGN_TODO in text
    assert text.count("BEGIN:VEVENT") == 3
    found = ics.read(CAL, "dentist-42@example.com")
    assert found is not None and found.job_id is None and found.event is None
    with pytest.raises(NotOwnedError):
        ics.update(CAL, RemoteRef("dentist-42@example.com"), sample_event("J-evil"))
    # Busy time honours the custom VTIMEZONE (UTC-6 fixed): 12:00 local is 18:00 UTC.
    day = datetime(2026, 12, 1, tzinfo=UTC)
    blocks = ics.busy(CAL, day, day + timedelta(days=1))
    assert any(
        b.job_id is None and b.start == datetime(2026, 12, 1, 18, tzinfo=UTC) for b in blocks
    )


def test_create_with_a_key_whose_uid_is_foreign_is_refused(ics: IcsFeedConnector) -> None:
    start = datetime(2026, 12, 1, 12, tzinfo=CHICAGO)
    hand_edit(feed_path(ics), foreign_vevent("taken@fieldsync", start, start + timedelta(hours=1)))
    with pytest.raises(NotOwnedError):
        ics.create(CAL, "taken", sample_event("J-taken"))


def test_busy_reads_foreign_times_in_every_form(ics: IcsFeedConnector) -> None:
    ics.create(CAL, "key-b", sample_event("J-b", hour=8))  # X-WR-TIMEZONE: America/Chicago
    utc = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    parts = [
        foreign_vevent("utc@x", utc, utc + timedelta(hours=1)),
        foreign_vevent(
            "tzid@x",
            datetime(2026, 12, 1, 12, tzinfo=CHICAGO),
            datetime(2026, 12, 1, 12, 30, tzinfo=CHICAGO),
        ),
        "BEGIN:VEVENT\r\nUID:floating@x\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART:20261201T150000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n",
        "BEGIN:VEVENT\r\nUID:weekly@x\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART;TZID=America/Chicago:20261103T170000\r\n"
        "DTEND;TZID=America/Chicago:20261103T180000\r\nRRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\n",
        foreign_vevent("cancelled@x", utc, utc + timedelta(hours=1), STATUS="CANCELLED"),
        foreign_vevent("free@x", utc, utc + timedelta(hours=1), TRANSP="TRANSPARENT"),
    ]
    hand_edit(feed_path(ics), "".join(parts))
    day = datetime(2026, 12, 1, tzinfo=CHICAGO)
    blocks = ics.busy(CAL, day, day + timedelta(days=1))
    starts = {(b.start.astimezone(UTC), b.job_id) for b in blocks}
    assert starts == {
        (datetime(2026, 12, 1, 14, tzinfo=UTC), "J-b"),  # ours, 08:00 CST
        (datetime(2026, 12, 1, 20, tzinfo=UTC), None),  # UTC
        (datetime(2026, 12, 1, 18, tzinfo=UTC), None),  # TZID 12:00 CST
        (datetime(2026, 12, 1, 21, tzinfo=UTC), None),  # floating 15:00 in X-WR-TIMEZONE
        (datetime(2026, 12, 1, 23, tzinfo=UTC), None),  # weekly series, Tuesday 17:00 CST
    }
    blocks = ics.busy(CAL, day + timedelta(days=7), day + timedelta(days=8))
    assert [(b.start.astimezone(UTC), b.job_id) for b in blocks] == [
        (datetime(2026, 12, 8, 23, tzinfo=UTC), None)
    ]


def test_unreadable_file_is_refused_and_left_alone(ics: IcsFeedConnector) -> None:
    path = feed_path(ics)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n")  # truncated by hand
    with pytest.raises(PermanentError, match="not a valid iCalendar"):
        ics.create(CAL, "k", sample_event())
    [result] = ics.push(CAL, [Op(1, OpKind.CREATE, "k", sample_event())])
    assert isinstance(result.error, PermanentError)
    assert path.read_bytes() == b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n"


# --- the document ----------------------------------------------------------------------------


def test_feed_parses_and_expands_to_the_right_instants(ics: IcsFeedConnector) -> None:
    dst = datetime(2027, 3, 14, 9, 0, tzinfo=CHICAGO)
    events = {
        "k1": sample_event("J-1", hour=9),
        "k2": replace(sample_event("J-2"), start=dst, end=dst + timedelta(hours=2)),
        "k3": sample_event("J-3", hour=10, tz="Europe/Berlin"),
    }
    results = ics.push(
        CAL, [Op(i, OpKind.CREATE, key, e) for i, (key, e) in enumerate(events.items())]
    )
    assert all(r.ok for r in results)
    raw = feed_path(ics).read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    calendar = icalendar.Calendar.from_ical(raw)
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]).startswith("-//fieldsync//")
    assert str(calendar["CALSCALE"]) == "GREGORIAN"
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert str(calendar["X-WR-CALNAME"]) == "Dana Whitfield"
    assert str(calendar["X-WR-TIMEZONE"]) == "America/Chicago"
    assert b"REFRESH-INTERVAL;VALUE=DURATION:PT5M\r\n" in raw
    assert b"X-PUBLISHED-TTL:PT5M\r\n" in raw
    occurrences = recurring_ical_events.of(calendar).between(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    )
    got = {
        str(o["X-FIELDSYNC-JOB-ID"]): (o.start.astimezone(UTC), o.end.astimezone(UTC))
        for o in occurrences
    }
    assert got == {
        e.job_id: (e.start.astimezone(UTC), e.end.astimezone(UTC)) for e in events.values()
    }
    assert got["J-2"][0] == datetime(2027, 3, 14, 14, tzinfo=UTC)


def test_events_are_ordered_and_output_is_deterministic(tmp_path: Path) -> None:
    events = [sample_event(f"J-{h}", hour=h) for h in (15, 9, 12)]
    ops = [Op(i, OpKind.CREATE, f"key-{e.job_id}", e) for i, e in enumerate(events)]
    a = IcsFeedConnector(tmp_path / "a", clock=Clock())
    b = IcsFeedConnector(tmp_path / "b", clock=Clock())
    a.push(CAL, ops)
    b.push(CAL, list(reversed(ops)))
    data = a.path_for(CAL).read_bytes()
    assert data == b.path_for(CAL).read_bytes()
    order = [line for line in data.split(b"\r\n") if line.startswith(b"X-FIELDSYNC-JOB-ID")]
    assert order == [
        b"X-FIELDSYNC-JOB-ID:J-9",
        b"X-FIELDSYNC-JOB-ID:J-12",
        b"X-FIELDSYNC-JOB-ID:J-15",
    ]


def test_unchanged_push_rewrites_nothing(ics: IcsFeedConnector, clock: Clock) -> None:
    events = [sample_event(f"J-{h}", hour=h) for h in (8, 10, 13)]
    ops = [Op(i, OpKind.CREATE, f"key-{e.job_id}", e) for i, e in enumerate(events)]
    assert all(r.ok for r in ics.push(CAL, ops))
    path = feed_path(ics)
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
    clock.now += timedelta(hours=1)
    refs = [RemoteRef(uid_for(op.key), "0") for op in ops]
    again = ics.push(CAL, ops) + ics.push(
        CAL,
        [Op(9, OpKind.UPDATE, op.key, op.event, ref) for op, ref in zip(ops, refs, strict=True)],
    )
    assert all(r.ok for r in again)
    assert [r.ref for r in again] == refs + refs  # etags unchanged: SEQUENCE did not move
    clear_cache()  # and from a cold start, re-parsing the file
    assert all(r.ok for r in IcsFeedConnector(path.parent, clock=clock).push(CAL, ops))
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_dtstamp_of_an_untouched_event_does_not_move(ics: IcsFeedConnector, clock: Clock) -> None:
    ics.create(CAL, "key-a", sample_event("J-a", hour=8))
    ref_b = ics.create(CAL, "key-b", sample_event("J-b", hour=10))
    clock.now += timedelta(days=1)
    ics.update(CAL, ref_b, replace(sample_event("J-b", hour=10), summary="b moved"))
    found = vevents(ics)
    assert found["key-a@fieldsync"].decoded("DTSTAMP") == NOW
    assert found["key-b@fieldsync"].decoded("DTSTAMP") == clock.now


def test_a_hand_edit_is_seen_despite_the_cache(ics: IcsFeedConnector) -> None:
    ref = ics.create(CAL, "key-c", sample_event("J-c"))
    path = feed_path(ics)
    text = path.read_bytes().decode()
    path.write_bytes((text.replace("SEQUENCE:0", "SEQUENCE:7")).encode())
    with pytest.raises(PreconditionFailedError):
        ics.update(CAL, ref, sample_event("J-c"))
    assert ics.update(CAL, RemoteRef(ref.remote_id, "7"), sample_event("J-c")).etag in {"7", "8"}


# --- calendar ids and concurrency ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "", "two words", "x" * 300, "é"])
def test_unsafe_calendar_id_is_refused_with_its_name(
    ics: IcsFeedConnector, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        ics.create(bad, "k", sample_event())
    assert repr(bad) in str(caught.value) and "safe file name" in str(caught.value)
    [result] = ics.push(bad, [Op(1, OpKind.CREATE, "k", sample_event())])
    assert isinstance(result.error, PermanentError) and repr(bad) in str(result.error)
    assert list(tmp_path.rglob("*.ics")) == []


def test_threads_pushing_one_calendar_lose_nothing(ics: IcsFeedConnector) -> None:
    threads, rounds = 4, 15
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            # Each thread its own connector, as separate flow tasks would have.
            mine = IcsFeedConnector(ics.root)
            barrier.wait()
            for r in range(rounds):
                event = sample_event(f"J-{n}-{r}", hour=6 + r % 12)
                [result] = mine.push(CAL, [Op(r, OpKind.CREATE, f"key-{n}-{r}", event)])
                assert result.ok, result.error
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert len(vevents(ics)) == threads * rounds


def _process_worker(root: str, n: int, rounds: int) -> None:
    connector = IcsFeedConnector(Path(root))
    for r in range(rounds):
        event = sample_event(f"P-{n}-{r}", hour=6 + r % 12)
        [result] = connector.push(CAL, [Op(r, OpKind.CREATE, f"pkey-{n}-{r}", event)])
        assert result.ok, result.error


def test_processes_pushing_one_calendar_lose_nothing(ics: IcsFeedConnector) -> None:
    # spawn, not fork: forking a process that runs server threads (the Prefect harness) is unsafe.
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_worker, args=(str(ics.root), n, 10)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(vevents(ics)) == 30


def test_push_writes_the_file_once_and_reports_each_item(
    ics: IcsFeedConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.ics_feed as module

    writes: list[Path] = []
    real = module._atomic_write

    def counting(path: Path, data: bytes) -> os.stat_result:
        writes.append(path)
        return real(path, data)

    monkeypatch.setattr(module, "_atomic_write", counting)
    ref = ics.create(CAL, "key-0", sample_event("J-0"))
    ics.update(CAL, ref, replace(sample_event("J-0"), summary="elsewhere"))  # ref now stale
    writes.clear()
    start = datetime(2026, 12, 1, 12, tzinfo=CHICAGO)
    hand_edit(feed_path(ics), foreign_vevent("f@x", start, start + timedelta(hours=1)))
    results = ics.push(
        CAL,
        [
            *(
                Op(i, OpKind.CREATE, f"key-{i}", sample_event(f"J-{i}", hour=i))
                for i in range(1, 6)
            ),
            Op(10, OpKind.UPDATE, "key-0", replace(sample_event("J-0"), summary="ours"), ref),
            Op(11, OpKind.DELETE, "key-gone", ref=RemoteRef("gone@fieldsync")),
            Op(12, OpKind.DELETE, "key-f", ref=RemoteRef("f@x")),
            Op(13, OpKind.DELETE, "key-1", ref=RemoteRef("key-1@fieldsync", "0")),
        ],
    )
    by_item = {r.item: r for r in results}
    assert all(by_item[i].ok for i in (1, 2, 3, 4, 5, 10, 11, 13))
    assert by_item[10].ref == RemoteRef("key-0@fieldsync", "2")  # reconciled stale etag
    assert isinstance(by_item[12].error, NotOwnedError)
    assert writes == [feed_path(ics)]
    found = vevents(ics)
    assert str(found["key-0@fieldsync"]["SUMMARY"]) == "ours"
    assert str(found["key-1@fieldsync"]["STATUS"]) == "CANCELLED"
    assert "f@x" in found


def test_details_are_json_pairs(ics: IcsFeedConnector) -> None:
    ref = ics.create(CAL, "key-j", sample_event("J-j"))
    value = vevents(ics)[ref.remote_id]["X-FIELDSYNC-DETAILS"]
    from icalendar.parser import unescape_backslash

    assert json.loads(unescape_backslash(value.to_ical().decode())) == [
        ["job_type", "AC repair"],
        ["customer_phone", "+1 214 555 0100"],
    ]


def test_vtimezone_span_follows_the_events(ics: IcsFeedConnector) -> None:
    late = datetime(2041, 7, 1, 9, tzinfo=CHICAGO)  # beyond icalendar's 2038 default
    ics.create(
        CAL, "k-late", replace(sample_event("J-late"), start=late, end=late + timedelta(hours=1))
    )
    [tz] = parsed(ics).walk("VTIMEZONE")
    _offsets_match(tz, CHICAGO, range(2040, 2043))
    # 2041's DST start, as wall time in the offset it leaves (RFC 5545 3.6.5): 02:00, not 03:00.
    assert "20410310T020000" in tz.to_ical().decode()
