"""Every ledger rule, proven through the real flows on a Prefect test server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from connectors.errors import PermanentError, TransientError
from connectors.memory import MemoryBackend, SimulatedCrash
from fieldsync.domain import LedgerState
from fieldsync.store.changes import AppointmentChange
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment, Conflict, SyncLedger
from fieldsync.sync.planner import MassDeletionBlocked
from flows.booked import appointment_booked
from flows.common import SyncFailed
from flows.modified import appointment_modified
from flows.shift_start import shift_start_sync
from flows.technician_status import technician_status_update
from tests.factories import DAY, add_appointment, add_job_type, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


def ledger(db_url: str, appointment_id: str | None = None) -> list[SyncLedger]:
    with session_scope(db_url) as s:
        stmt = select(SyncLedger).order_by(SyncLedger.id)
        if appointment_id:
            stmt = stmt.where(SyncLedger.appointment_id == appointment_id)
        return list(s.scalars(stmt))


def job_ids(cal: MemoryBackend, calendar_id: str) -> list[str]:
    return sorted(e.job_id or "" for e in cal.live_events(calendar_id))


@pytest.fixture
def one_job(db_url: str) -> str:
    with session_scope(db_url) as s:
        add_job_type(s)
        add_technician(s, "T1", platforms=("memory", "ics"))
        add_technician(s, "T2")
        return add_appointment(s, "T1", hour=9).id


def test_new_appointment_is_created_once_with_its_key_fixed(
    db_url: str, one_job: str, memory_calendars: MemoryBackend, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    result = appointment_booked(one_job)
    assert result.report("memory").created == 1
    assert result.report("ics").created == 1
    assert memory_calendars.writes == {"create": 1}
    assert job_ids(memory_calendars, "T1-memory") == [one_job]
    rows = ledger(db_url, one_job)
    assert {r.state for r in rows} == {LedgerState.SYNCED}
    assert all(r.idempotency_key.startswith(f"fs-{one_job}-") for r in rows)
    assert (tmp_path / "feeds" / "T1-ics.ics").read_text().count("BEGIN:VEVENT") == 1

    again = appointment_booked(one_job)
    assert again.writes == 0
    assert memory_calendars.writes == {"create": 1}


def test_edit_updates_once_and_only_when_content_changed(
    db_url: str, one_job: str, memory_calendars: MemoryBackend, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    appointment_booked(one_job)
    result = appointment_modified(one_job, AppointmentChange(notes="Dog in yard"), "customer")
    assert result.report("memory").updated == 1
    assert memory_calendars.writes == {"create": 1, "update": 1}
    [event] = memory_calendars.live_events("T1-memory")
    assert event.event is not None and "Dog in yard" in event.event.description

    # The same change again, and a version bump with identical content: no writes.
    assert appointment_modified(one_job, AppointmentChange(notes="Dog in yard")).writes == 0
    with session_scope(db_url) as s:
        s.execute(update(Appointment).values(version=Appointment.version + 5))
    assert appointment_modified(one_job).writes == 0
    assert memory_calendars.writes == {"create": 1, "update": 1}


def test_reschedule_moves_the_event(
    db_url: str, one_job: str, memory_calendars: MemoryBackend, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    appointment_booked(one_job)
    new_start = DAY + timedelta(hours=13)
    appointment_modified(one_job, AppointmentChange(start=new_start), "admin")
    [event] = memory_calendars.live_events("T1-memory")
    assert event.start == new_start and event.end == new_start + timedelta(hours=1)


def test_cancel_deletes_once_and_a_missing_event_counts_as_done(
    db_url: str, memory_calendars: MemoryBackend, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    with session_scope(db_url) as s:
        add_technician(s, "T1", platforms=("memory", "ics"))
        first = add_appointment(s, "T1", hour=8).id
        second = add_appointment(s, "T1", hour=11).id
        add_appointment(s, "T1", hour=14)
    shift_start_sync(DAY.date())

    result = technician_status_update(first, "canceled", technician_id="T1")
    assert result.report("memory").deleted == 1
    assert result.report("ics").deleted == 1
    assert first not in job_ids(memory_calendars, "T1-memory")
    feed = (tmp_path / "feeds" / "T1-ics.ics").read_text()
    assert "STATUS:CANCELLED" in feed  # the feed keeps history: cancelled, not vanished
    assert technician_status_update(first, "canceled").writes == 0

    # Someone deleted the second event by hand; canceling it still ends cleanly.
    [gone] = [e for e in memory_calendars.live_events("T1-memory") if e.job_id == second]
    del memory_calendars.events("T1-memory")[gone.remote_id]
    result = technician_status_update(second, "canceled")
    assert result.report("memory").failed == 0
    assert {r.state for r in ledger(db_url, second)} == {LedgerState.DELETED}


def test_reassignment_deletes_from_old_and_creates_on_new(
    db_url: str, one_job: str, memory_calendars: MemoryBackend, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    appointment_booked(one_job)
    result = appointment_modified(one_job, AppointmentChange(technician_id="T2"), "admin")
    assert result.report("memory").deleted == 1
    assert result.report("memory").created == 1
    assert result.report("ics").deleted == 1
    assert job_ids(memory_calendars, "T1-memory") == []
    assert job_ids(memory_calendars, "T2-memory") == [one_job]
    assert appointment_modified(one_job).writes == 0

    # And back again: the old calendar gets a fresh event (a new generation, a new key).
    appointment_modified(one_job, AppointmentChange(technician_id="T1"), "admin")
    assert job_ids(memory_calendars, "T1-memory") == [one_job]
    rows = {r.binding_id: r for r in ledger(db_url, one_job)}
    assert max(r.generation for r in rows.values()) == 2


def test_crash_mid_push_then_rerun_pushes_exactly_what_is_missing(
    db_url: str, memory_calendars: MemoryBackend
) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
        ids = [add_appointment(s, "T1", hour=7 + i * 0.5, minutes=25).id for i in range(12)]
    memory_calendars.crash_after_writes = 4  # the 5th create lands, then the worker "dies"
    with pytest.raises(SimulatedCrash):
        shift_start_sync(DAY.date())
    assert memory_calendars.writes["create"] == 5
    pending = [r for r in ledger(db_url) if r.state == LedgerState.PENDING]
    assert pending, "the crash left reserved items whose outcome was never recorded"

    result = shift_start_sync(DAY.date())
    assert sorted(job_ids(memory_calendars, "T1-memory")) == sorted(ids)
    assert len(memory_calendars.live_events("T1-memory")) == 12  # no duplicate
    # 5 creates landed before the crash; the re-run made exactly the 7 missing ones (the 5th,
    # whose outcome was never recorded, was found by its idempotency key, not made again).
    assert memory_calendars.writes["create"] == 12
    assert result.report("memory").failed == 0
    assert {r.state for r in ledger(db_url)} == {LedgerState.SYNCED}
    assert shift_start_sync(DAY.date()).writes == 0


def test_transient_failures_are_retried_by_prefect_without_duplicates(
    db_url: str, memory_calendars: MemoryBackend
) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
        ids = [add_appointment(s, "T1", hour=7 + i, minutes=50).id for i in range(6)]
    memory_calendars.fail_next = [
        TransientError("503 backend busy", platform="memory", status=503) for _ in range(3)
    ]
    result = shift_start_sync(DAY.date())
    assert result.report("memory").failed == 0  # the retry attempt's report
    assert sorted(job_ids(memory_calendars, "T1-memory")) == sorted(ids)
    assert memory_calendars.writes["create"] == 6


def test_permanent_failure_fails_the_run_and_a_rerun_pushes_only_that_item(
    db_url: str, memory_calendars: MemoryBackend
) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
        for i in range(4):
            add_appointment(s, "T1", hour=7 + i, minutes=50)
    memory_calendars.fail_next = [PermanentError("calendar is read-only", platform="memory")]
    with pytest.raises(SyncFailed, match="read-only"):
        shift_start_sync(DAY.date())
    failed = [r for r in ledger(db_url) if r.state == LedgerState.FAILED]
    assert len(failed) == 1 and "read-only" in (failed[0].last_error or "")
    assert memory_calendars.writes["create"] == 3

    result = shift_start_sync(DAY.date())
    assert result.writes == 1 and result.report("memory").unchanged == 3
    assert len(memory_calendars.live_events("T1-memory")) == 4


def test_mass_deletion_stops_unless_forced(db_url: str, memory_calendars: MemoryBackend) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
        ids = [add_appointment(s, "T1", hour=7 + i, minutes=50).id for i in range(6)]
    shift_start_sync(DAY.date())
    with session_scope(db_url) as s:
        s.execute(
            update(Appointment)
            .where(Appointment.id.in_(ids[:4]))
            .values(status="canceled", version=Appointment.version + 1)
        )
    with pytest.raises(MassDeletionBlocked, match=r"T1 .*4 of 6 events.*force=True"):
        shift_start_sync(DAY.date())
    assert len(memory_calendars.live_events("T1-memory")) == 6  # nothing was written
    result = shift_start_sync(DAY.date(), force=True)
    assert result.report("memory").deleted == 4
    assert len(memory_calendars.live_events("T1-memory")) == 2


def test_events_without_our_stamp_are_never_touched(
    db_url: str, memory_calendars: MemoryBackend
) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
        job = add_appointment(s, "T1", hour=9).id
    dentist = memory_calendars.plant_foreign(
        "T1-memory", DAY + timedelta(hours=15), DAY + timedelta(hours=16)
    )
    appointment_booked(job)
    # Corrupt the ledger so it points at the foreign event: the push must refuse it.
    with session_scope(db_url) as s:
        s.execute(update(SyncLedger).values(remote_id=dentist, etag=None, content_hash="x"))
    with pytest.raises(SyncFailed, match="job stamp"):
        appointment_modified(job, AppointmentChange(notes="new"))
    assert dentist in memory_calendars.events("T1-memory")
    assert memory_calendars.events("T1-memory")[dentist].event is None


def test_delay_moves_the_event_and_rechecks_later_jobs(
    db_url: str, memory_calendars: MemoryBackend
) -> None:
    with session_scope(db_url) as s:
        add_technician(s, "T1")
        early = add_appointment(s, "T1", hour=8, minutes=60).id
        later = add_appointment(s, "T1", hour=10, minutes=60).id
    shift_start_sync(DAY.date())
    eta = DAY + timedelta(hours=9, minutes=30)  # arrives 9:30, so runs to 10:30
    result = technician_status_update(early, "delayed", technician_id="T1", eta=eta)
    [moved] = [e for e in memory_calendars.live_events("T1-memory") if e.job_id == early]
    assert moved.start == eta and moved.end == eta + timedelta(hours=1)
    assert any(f.kind == "overlap" and later in f.appointment_ids for f in result.conflicts)
    with session_scope(db_url) as s:
        kinds = {c.kind for c in s.scalars(select(Conflict))}
    assert "overlap" in kinds
    # Both jobs of the double-booking go out tentative until a dispatcher resolves it.
    assert all(e.status == "tentative" for e in memory_calendars.live_events("T1-memory"))


def test_completed_early_moves_the_end(
    db_url: str, one_job: str, memory_calendars: MemoryBackend, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    appointment_booked(one_job)
    done = DAY + timedelta(hours=9, minutes=40)
    technician_status_update(one_job, "completed", technician_id="T1", completed_at=done)
    [event] = memory_calendars.live_events("T1-memory")
    assert event.end == done
    assert event.event is not None and "[Completed]" in event.event.summary


def test_wrong_technician_cannot_report_status(db_url: str, one_job: str) -> None:
    with pytest.raises(Exception, match="T2 is not assigned"):
        technician_status_update(one_job, "completed", technician_id="T2")
