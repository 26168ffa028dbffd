"""The interval conflict sweep: detects over the coming days, alerts once, pushes nothing."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker
from sqlalchemy import select

from connectors.memory import MemoryBackend
from fieldsync.parameters import BadRequest
from fieldsync.store.db import session_scope
from fieldsync.store.reads import NotFoundInStore
from fieldsync.store.tables import Conflict, SyncLedger
from fieldsync.sweep import sweep_job_ids
from flows.conflict_sweep import conflict_sweep
from tests.factories import DAY, add_appointment, add_job_type, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


def conflict_events(technician_id: str, expect: int) -> list[Any]:
    """`fieldsync.conflict.detected` events the Prefect server stored for this technician.
    Events travel asynchronously, so wait (briefly) until `expect` of them have arrived."""
    EventsWorker.drain_all(timeout=10)
    flt = EventFilter(
        event=EventNameFilter(name=["fieldsync.conflict.detected"]),
        resource=EventResourceFilter(id=[f"fieldsync.technician.{technician_id}"]),
    )
    deadline = time.monotonic() + 15
    with get_client(sync_client=True) as client:
        while True:
            events = list(client.read_events(filter=flt, limit=50).events)
            if len(events) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # room for any extra (duplicate) event to land, so a count can fail
        return list(client.read_events(filter=flt, limit=50).events)


@pytest.fixture
def tech() -> str:
    # The Prefect server lives for the whole session: a fresh id keeps events apart per test.
    return f"S-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def double_booked(db_url: str, tech: str) -> dict[str, str]:
    """`tech` double-booked tomorrow and again in four days; a colleague elsewhere, too."""
    with session_scope(db_url) as s:
        add_job_type(s)
        add_technician(s, tech, region="dfw")
        add_technician(s, "N1", region="north")
        tomorrow = DAY + timedelta(days=1)
        later = DAY + timedelta(days=4)
        return {
            "first": add_appointment(s, tech, hour=9, day=tomorrow).id,
            "second": add_appointment(s, tech, hour=9.5, day=tomorrow).id,
            "far_first": add_appointment(s, tech, hour=9, day=later).id,
            "far_second": add_appointment(s, tech, hour=9.5, day=later).id,
            "north_first": add_appointment(s, "N1", hour=13, day=tomorrow).id,
            "north_second": add_appointment(s, "N1", hour=13.5, day=tomorrow).id,
        }


def test_sweep_alerts_a_conflict_once_emits_its_event_and_pushes_nothing(
    db_url: str, tech: str, double_booked: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    first, second = double_booked["first"], double_booked["second"]

    result = conflict_sweep(days_ahead=2, region="dfw", as_of=DAY)

    overlaps = [f for f in result.conflicts if f.kind == "overlap"]
    assert [f.appointment_ids for f in overlaps] == [(first, second)]
    # Four days out is beyond the window; another region is not this sweep's business.
    swept = {a for f in result.conflicts for a in f.appointment_ids}
    assert not swept & {double_booked[k] for k in ("far_first", "north_first")}
    assert result.new_alerts == len(result.conflicts) >= 1
    with session_scope(db_url) as s:
        [stored] = s.scalars(select(Conflict).where(Conflict.kind == "overlap")).all()
        assert stored.alerted_at is not None and stored.appointment_ids == [first, second]
        assert s.scalars(select(SyncLedger)).all() == []  # nothing pushed, nothing planned
    assert memory_calendars.all_events() == [] and not memory_calendars.writes

    again = conflict_sweep(days_ahead=2, region="dfw", as_of=DAY)
    assert again.new_alerts == 0 and len(again.conflicts) == len(result.conflicts)

    events = conflict_events(tech, expect=len(result.conflicts))
    overlap_events = [e for e in events if e.payload.get("kind") == "overlap"]
    assert len(events) == len(result.conflicts)  # one per alert, none for the second sweep
    [event] = overlap_events
    assert event.resource.id == f"fieldsync.technician.{tech}"
    assert event.payload["severity"] == "critical"
    assert event.payload["appointment_ids"] == [first, second]
    assert event.payload["detail"] == overlaps[0].detail


def test_a_changed_conflict_alerts_again_and_a_resolved_one_is_closed(
    db_url: str, tech: str, double_booked: dict[str, str]
) -> None:
    from fieldsync.store.changes import AppointmentChange, apply_change

    conflict_sweep(days_ahead=2, region="dfw", as_of=DAY)
    second = double_booked["second"]
    with session_scope(db_url) as s:  # still overlapping, by a different amount
        apply_change(s, second, AppointmentChange(start=DAY + timedelta(days=1, hours=9.75)))
    changed = conflict_sweep(days_ahead=2, region="dfw", as_of=DAY)
    assert [f.kind for f in changed.conflicts].count("overlap") == 1
    assert changed.new_alerts >= 1

    with session_scope(db_url) as s:  # moved apart: resolved
        apply_change(s, second, AppointmentChange(start=DAY + timedelta(days=1, hours=14)))
    resolved = conflict_sweep(days_ahead=2, region="dfw", as_of=DAY)
    assert "overlap" not in [f.kind for f in resolved.conflicts]
    with session_scope(db_url) as s:
        overlaps = s.scalars(select(Conflict).where(Conflict.kind == "overlap")).all()
        assert len(overlaps) == 2 and all(c.resolved_at is not None for c in overlaps)


def test_all_regions_and_the_table_artifact(
    db_url: str, tech: str, double_booked: dict[str, str]
) -> None:
    state = conflict_sweep(days_ahead=2, as_of=DAY, return_state=True)
    result = state.result()
    overlapping = {f.appointment_ids for f in result.conflicts if f.kind == "overlap"}
    assert overlapping == {
        (double_booked["first"], double_booked["second"]),
        (double_booked["north_first"], double_booked["north_second"]),
    }
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    assert run.name == "conflict-sweep-all-2026-12-01+2d"
    [table] = [a for a in artifacts if a.key == "conflict-sweep-all"]
    assert double_booked["north_first"] in str(table.data)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"days_ahead": 0}, BadRequest, "days_ahead must be at least 1"),
        ({"region": "atlantis"}, NotFoundInStore, "no active technician in region 'atlantis'"),
        ({"as_of": DAY.replace(tzinfo=None)}, BadRequest, "as_of .* has no time zone"),
    ],
)
def test_bad_parameters_fail_clearly(
    db_url: str, double_booked: dict[str, str], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        conflict_sweep(**kwargs)
    with session_scope(db_url) as s:
        assert s.scalars(select(Conflict)).all() == []


def test_sweep_job_ids_covers_each_technicians_own_local_days(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "CHI", region="x")
        add_technician(s, "SYD", region="x", tz="Australia/Sydney")
        next_day = DAY + timedelta(days=1)
        # Dec 2, 10:00 in Chicago: Chicago's second day, but Dec 3, 03:00 in Sydney.
        chi_second = add_appointment(s, "CHI", hour=10, day=next_day).id
        syd_third = add_appointment(s, "SYD", hour=10, day=next_day).id
        # Dec 1, 23:30 in Chicago: Dec 2, 16:30 in Sydney, its second day.
        syd_second = add_appointment(s, "SYD", hour=23.5).id
        chi_third = add_appointment(s, "CHI", hour=9, day=DAY + timedelta(days=2)).id
    with session_scope(db_url) as s:
        # 01:00 in Chicago is 18:00 on Dec 1 in Sydney: both technicians' today is Dec 1.
        ids = sweep_job_ids(s, days_ahead=2, now=DAY + timedelta(hours=1))
    assert set(ids) == {chi_second, syd_second}
    assert not {syd_third, chi_third} & set(ids)
