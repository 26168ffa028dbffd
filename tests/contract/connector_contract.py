"""The contract every connector passes. A platform's test is a subclass supplying fixtures:

connector      a CalendarConnector talking to its (real or fake) server
calendar_id    a calendar on that server that the test may write to
plant_foreign  callable(calendar_id, start, end) -> remote id of an event we did not create
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from connectors.base import CalendarConnector, Op, RemoteRef
from connectors.errors import NotFoundError, NotOwnedError, PreconditionFailedError
from fieldsync.domain import OpKind
from fieldsync.events import CalendarEvent

CHICAGO = ZoneInfo("America/Chicago")


def sample_event(job_id: str = "J-1", hour: int = 9, tz: str = "America/Chicago") -> CalendarEvent:
    zone = ZoneInfo(tz)
    start = datetime(2026, 12, 1, hour, 0, tzinfo=zone)
    return CalendarEvent(
        job_id=job_id,
        summary=f"AC repair - Dana Whitfield ({job_id})",
        start=start,
        end=start + timedelta(minutes=90),
        timezone=tz,
        location="1201 Elm St, Dallas, TX 75270",
        description="Job: AC repair\nMaterials: R-410A x2, capacitor\nNotes: gate code 4411",
        lat=32.7812,
        lon=-96.7994,
        categories=("AC repair", "normal"),
        details=(("job_type", "AC repair"), ("customer_phone", "+1 214 555 0100")),
    )


def is_live(connector: CalendarConnector, calendar_id: str, remote_id: str) -> bool:
    found = connector.read(calendar_id, remote_id)
    return found is not None and (found.event is None or found.event.status != "cancelled")


class ConnectorContract:
    """Inherit, provide the fixtures, and every test here runs against your connector."""

    def test_create_then_read_back_carries_our_stamp_and_content(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        event = sample_event("J-create")
        ref = connector.create(calendar_id, "key-create-1", event)
        assert ref.remote_id
        found = connector.read(calendar_id, ref.remote_id)
        assert found is not None
        assert found.job_id == "J-create"
        assert found.event is not None
        assert found.event.summary == event.summary
        assert found.event.start == event.start and found.event.end == event.end
        assert found.event.location == event.location

    def test_repeated_create_with_same_key_makes_one_event(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        event = sample_event("J-idem")
        first = connector.create(calendar_id, "key-idem-1", event)
        second = connector.create(calendar_id, "key-idem-1", event)
        assert first.remote_id == second.remote_id
        start = event.start - timedelta(hours=1)
        blocks = connector.busy(calendar_id, start, event.end + timedelta(hours=1))
        assert [b.job_id for b in blocks].count("J-idem") == 1

    def test_update_changes_content_and_etag(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        event = sample_event("J-upd")
        ref = connector.create(calendar_id, "key-upd-1", event)
        moved = replace(
            event,
            start=event.start + timedelta(hours=2),
            end=event.end + timedelta(hours=2),
            summary="AC repair (moved)",
        )
        new_ref = connector.update(calendar_id, ref, moved)
        assert new_ref.remote_id == ref.remote_id
        assert new_ref.etag != ref.etag
        found = connector.read(calendar_id, ref.remote_id)
        assert found is not None and found.event is not None
        assert found.event.summary == "AC repair (moved)"
        assert found.event.start == moved.start

    def test_update_with_stale_etag_is_a_precondition_failure(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        event = sample_event("J-stale")
        ref = connector.create(calendar_id, "key-stale-1", event)
        connector.update(calendar_id, ref, replace(event, summary="first edit"))
        with pytest.raises(PreconditionFailedError):
            connector.update(calendar_id, ref, replace(event, summary="second edit"))

    def test_push_reconciles_a_stale_etag_on_our_own_event(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        event = sample_event("J-reconcile")
        ref = connector.create(calendar_id, "key-rec-1", event)
        connector.update(calendar_id, ref, replace(event, summary="edited elsewhere"))
        [result] = connector.push(
            calendar_id, [Op(1, OpKind.UPDATE, "key-rec-1", replace(event, summary="ours"), ref)]
        )
        assert result.ok, result.error
        found = connector.read(calendar_id, ref.remote_id)
        assert found is not None and found.event is not None
        assert found.event.summary == "ours"

    def test_delete_removes_and_second_delete_is_not_found(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        ref = connector.create(calendar_id, "key-del-1", sample_event("J-del"))
        connector.delete(calendar_id, ref)
        assert not is_live(connector, calendar_id, ref.remote_id)
        with pytest.raises(NotFoundError):
            connector.delete(calendar_id, RemoteRef(ref.remote_id))

    def test_push_treats_delete_of_missing_event_as_done(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        [result] = connector.push(
            calendar_id, [Op(7, OpKind.DELETE, "k", ref=RemoteRef("no-such-event"))]
        )
        assert result.ok and result.item == 7

    def test_update_of_missing_event_is_not_found(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        with pytest.raises(NotFoundError):
            connector.update(calendar_id, RemoteRef("no-such-event"), sample_event("J-missing"))

    def test_events_without_our_stamp_are_never_touched(
        self,
        connector: CalendarConnector,
        calendar_id: str,
        plant_foreign: Callable[[str, datetime, datetime], str],
    ) -> None:
        start = datetime(2026, 12, 1, 12, 0, tzinfo=CHICAGO)
        foreign = plant_foreign(calendar_id, start, start + timedelta(hours=1))
        with pytest.raises(NotOwnedError):
            connector.update(calendar_id, RemoteRef(foreign), sample_event("J-evil"))
        with pytest.raises(NotOwnedError):
            connector.delete(calendar_id, RemoteRef(foreign))
        assert is_live(connector, calendar_id, foreign)

    def test_busy_time_includes_foreign_events_and_marks_ours(
        self,
        connector: CalendarConnector,
        calendar_id: str,
        plant_foreign: Callable[[str, datetime, datetime], str],
    ) -> None:
        ours = sample_event("J-busy", hour=8)
        connector.create(calendar_id, "key-busy-1", ours)
        start = datetime(2026, 12, 1, 13, 0, tzinfo=CHICAGO)
        plant_foreign(calendar_id, start, start + timedelta(minutes=30))
        day = datetime(2026, 12, 1, 0, 0, tzinfo=CHICAGO)
        blocks = connector.busy(calendar_id, day, day + timedelta(days=1))
        assert any(b.job_id == "J-busy" and b.start == ours.start for b in blocks)
        assert any(b.job_id is None and b.start == start for b in blocks)
        later = connector.busy(calendar_id, day + timedelta(days=1), day + timedelta(days=2))
        assert later == []

    def test_time_zone_survives_round_trip_across_dst(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        # 2027-03-14 is the US spring-forward day: 09:00 local is UTC-5, not UTC-6.
        start = datetime(2027, 3, 14, 9, 0, tzinfo=CHICAGO)
        event = replace(sample_event("J-dst"), start=start, end=start + timedelta(hours=1))
        ref = connector.create(calendar_id, "key-dst-1", event)
        found = connector.read(calendar_id, ref.remote_id)
        assert found is not None and found.event is not None
        assert found.event.start.astimezone(UTC) == datetime(2027, 3, 14, 14, 0, tzinfo=UTC)
        assert found.event.timezone == "America/Chicago"

    def test_push_reports_each_item(self, connector: CalendarConnector, calendar_id: str) -> None:
        ref = connector.create(calendar_id, "key-batch-0", sample_event("J-b0"))
        results = connector.push(
            calendar_id,
            [
                Op(1, OpKind.CREATE, "key-batch-1", sample_event("J-b1", hour=10)),
                Op(
                    2, OpKind.UPDATE, "key-batch-0", replace(sample_event("J-b0"), summary="x"), ref
                ),
                Op(3, OpKind.UPDATE, "key-batch-9", sample_event("J-b9"), RemoteRef("missing")),
            ],
        )
        by_item = {r.item: r for r in results}
        assert by_item[1].ok and by_item[1].ref is not None
        assert by_item[2].ok
        assert isinstance(by_item[3].error, NotFoundError)

    def test_lookup_finds_what_a_create_with_that_key_made(
        self, connector: CalendarConnector, calendar_id: str
    ) -> None:
        if not connector.supports_lookup:
            pytest.fail(f"{connector.platform} must find events by idempotency key")
        assert connector.lookup(calendar_id, "key-never-used") is None
        ref = connector.create(calendar_id, "key-lookup-1", sample_event("J-lookup"))
        found = connector.lookup(calendar_id, "key-lookup-1")
        assert found is not None and found.remote_id == ref.remote_id
        # A crash between the create and recording it: the delete still finds the event.
        [result] = connector.push(calendar_id, [Op(5, OpKind.DELETE, "key-lookup-1")])
        assert result.ok
        assert not is_live(connector, calendar_id, ref.remote_id)
