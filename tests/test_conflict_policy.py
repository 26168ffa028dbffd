"""The deployment's conflict policy decides what happens to double-booked jobs."""

from __future__ import annotations

import pytest

from connectors.memory import MemoryBackend
from fieldsync import settings
from fieldsync.store.db import session_scope
from flows.shift_start import shift_start_sync
from tests.factories import DAY, add_appointment, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def double_booked(sqlite_url: str) -> tuple[str, str, str]:
    with session_scope(sqlite_url) as s:
        add_technician(s, "T1")
        a = add_appointment(s, "T1", hour=9).id
        b = add_appointment(s, "T1", hour=9.5).id
        clean = add_appointment(s, "T1", hour=13).id
    return a, b, clean


def statuses(cal: MemoryBackend) -> dict[str | None, str]:
    return {e.job_id: e.status for e in cal.live_events("T1-memory")}


def test_tentative_is_the_default(double_booked, memory_calendars: MemoryBackend) -> None:
    a, b, clean = double_booked
    shift_start_sync(DAY.date())
    assert statuses(memory_calendars) == {a: "tentative", b: "tentative", clean: "confirmed"}


def test_hold_keeps_conflicting_jobs_off_until_resolved(
    double_booked, memory_calendars: MemoryBackend
) -> None:
    _, _, clean = double_booked
    shift_start_sync(DAY.date(), conflict_policy="hold")
    assert statuses(memory_calendars) == {clean: "confirmed"}


def test_push_anyway(double_booked, memory_calendars: MemoryBackend) -> None:
    a, b, clean = double_booked
    result = shift_start_sync(DAY.date(), conflict_policy="push")
    assert statuses(memory_calendars) == {a: "confirmed", b: "confirmed", clean: "confirmed"}
    assert any(f.kind == "overlap" for f in result.conflicts)  # still found and alerted


def test_a_bad_policy_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_CONFLICT_POLICY", "ignore")
    with pytest.raises(ValueError, match="FIELDSYNC_CONFLICT_POLICY is 'ignore'"):
        settings.conflict_policy()


def test_personal_busy_time_on_the_technicians_calendar_is_a_conflict(
    sqlite_url: str, memory_calendars: MemoryBackend
) -> None:
    from datetime import timedelta

    with session_scope(sqlite_url) as s:
        add_technician(s, "T1")
        job = add_appointment(s, "T1", hour=15).id
    memory_calendars.plant_foreign(
        "T1-memory", DAY + timedelta(hours=15, minutes=30), DAY + timedelta(hours=16)
    )
    result = shift_start_sync(DAY.date())
    [busy] = [f for f in result.conflicts if f.kind == "busy"]
    assert busy.appointment_ids == (job,) and busy.technician_id == "T1"
    # Our own event for the job is on the same calendar and is not counted as busy time.
    assert len([f for f in result.conflicts if f.kind == "busy"]) == 1
