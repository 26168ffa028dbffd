"""Nightly drift repair: hand-deleted events come back, hand-edited ones get our content back,
foreign events stay untouched, and a dry run changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import select, update

from connectors.base import CalendarConnector, RemoteEvent, RemoteRef
from connectors.errors import TransientError
from connectors.memory import MemoryBackend, MemoryConnector, tamper
from fieldsync.domain import BindingView, LedgerState
from fieldsync.parameters import BadRequest
from fieldsync.store.changes import AppointmentChange, apply_change
from fieldsync.store.db import session_scope
from fieldsync.store.tables import SyncLedger
from fieldsync.sync import drift
from fieldsync.sync.drift import Check, Drift, Watched, classify, judge, read_remote
from flows.drift_repair import drift_repair
from flows.shift_start import shift_start_sync
from tasks.connectors import connector_for
from tests.contract.connector_contract import sample_event
from tests.factories import DAY, add_appointment, add_job_type, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


def ledger(db_url: str) -> dict[tuple[str, str], SyncLedger]:
    with session_scope(db_url) as s:
        return {(r.appointment_id, r.platform): r for r in s.scalars(select(SyncLedger))}


def ledger_snapshot(db_url: str) -> list[tuple[Any, ...]]:
    with session_scope(db_url) as s:
        return [
            (r.id, r.state, r.generation, r.remote_id, r.etag, r.content_hash, r.last_error)
            for r in s.scalars(select(SyncLedger).order_by(SyncLedger.id))
        ]


def calendar_snapshot(cal: MemoryBackend) -> dict[str, tuple[Any, ...]]:
    return {
        e.remote_id: (e.job_id, e.etag, e.event, e.status) for e in cal.all_events()
    }  # fmt: skip


def event_of(cal: MemoryBackend, job_id: str) -> Any:
    [stored] = [e for e in cal.live_events("T1-memory") if e.job_id == job_id]
    return stored


class Scene:
    """T1 on memory and an ICS feed, four jobs synced; then hands on the memory calendar."""

    def __init__(self, db_url: str, cal: MemoryBackend) -> None:
        self.db_url, self.cal = db_url, cal
        with session_scope(db_url) as s:
            add_job_type(s)
            add_technician(s, "T1", platforms=("memory", "ics"))
            self.deleted = add_appointment(s, "T1", hour=8).id
            self.edited = add_appointment(s, "T1", hour=10).id
            self.misfiled = add_appointment(s, "T1", hour=12).id
            self.pending = add_appointment(s, "T1", hour=14).id
            self.far = add_appointment(s, "T1", hour=9, day=DAY + timedelta(days=20)).id
        shift_start_sync(DAY.date())
        shift_start_sync((DAY + timedelta(days=20)).date())
        self.original_summary = event_of(cal, self.edited).event.summary

    def meddle(self) -> None:
        cal = self.cal
        del cal.events("T1-memory")[event_of(cal, self.deleted).remote_id]
        tamper(cal, "T1-memory", event_of(cal, self.edited).remote_id, "Lunch with Bob")
        # A personal event of the technician's, and a ledger row that (by some old bug) points
        # at another one: neither carries our stamp, so neither may be touched.
        hour = timedelta(hours=1)
        self.dentist = cal.plant_foreign("T1-memory", DAY + 15 * hour, DAY + 16 * hour)
        self.gym = cal.plant_foreign("T1-memory", DAY + 18 * hour, DAY + 19 * hour)
        with session_scope(self.db_url) as s:
            s.execute(
                update(SyncLedger)
                .where(SyncLedger.appointment_id == self.misfiled)
                .where(SyncLedger.platform == "memory")
                .values(remote_id=self.gym)
            )
        # A change the store holds that no sync has pushed yet: not drift, not ours to push.
        with session_scope(self.db_url) as s:
            apply_change(s, self.pending, AppointmentChange(notes="Bring the ladder"))


@pytest.fixture
def scene(
    db_url: str, memory_calendars: MemoryBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Scene:
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    return Scene(db_url, memory_calendars)


def test_dry_run_reports_drift_and_changes_nothing(
    db_url: str, scene: Scene, memory_calendars: MemoryBackend
) -> None:
    scene.meddle()
    ledger_before, calendar_before = ledger_snapshot(db_url), calendar_snapshot(memory_calendars)
    writes = dict(memory_calendars.writes)

    result = drift_repair(dry_run=True, as_of=DAY)

    assert (result.deleted, result.edited, result.not_ours) == (1, 1, 1)
    # 4 jobs x 2 calendars in the window (the job 20 days out is not); 5 of them in step.
    assert (result.checked, result.in_step, result.unchecked) == (8, 5, 0)
    assert result.repaired == 0
    actions = {(r.check.watched.appointment_id, r.check.drift): r.action for r in result.repairs}
    assert actions[(scene.deleted, Drift.DELETED)] == "would re-create (dry run)"
    assert actions[(scene.edited, Drift.EDITED)] == "would restore (dry run)"
    assert ledger_snapshot(db_url) == ledger_before
    assert calendar_snapshot(memory_calendars) == calendar_before
    assert dict(memory_calendars.writes) == writes


def test_repair_recreates_the_deleted_restores_the_edited_and_touches_nothing_else(
    db_url: str, scene: Scene, memory_calendars: MemoryBackend, tmp_path: Path
) -> None:
    scene.meddle()

    def foreign() -> dict[str, tuple[Any, ...]]:
        events = memory_calendars.events("T1-memory")
        return {
            rid: (events[rid].etag, events[rid].job_id, events[rid].event, events[rid].start)
            for rid in (scene.dentist, scene.gym)
        }

    foreign_before = foreign()
    feed = (tmp_path / "feeds" / "T1-ics.ics").read_text()
    pending_before = event_of(memory_calendars, scene.pending).event
    writes = dict(memory_calendars.writes)
    old_generation = ledger(db_url)[(scene.deleted, "memory")].generation

    state = drift_repair(as_of=DAY, return_state=True)
    result = state.result()

    assert (result.deleted, result.edited, result.not_ours) == (1, 1, 1)
    assert (result.repaired, result.repair_failed) == (2, 0)
    # Re-created: a new event under a new generation, recorded as synced.
    recreated = ledger(db_url)[(scene.deleted, "memory")]
    assert recreated.state == LedgerState.SYNCED and recreated.generation == old_generation + 1
    assert event_of(memory_calendars, scene.deleted).remote_id == recreated.remote_id
    # Restored: our summary is back, and the ledger knows the event's new etag.
    restored = event_of(memory_calendars, scene.edited)
    assert restored.event.summary == scene.original_summary
    assert ledger(db_url)[(scene.edited, "memory")].etag == restored.etag
    # Exactly those two writes: the foreign events, the feed and the pending change untouched.
    assert memory_calendars.writes["create"] == writes.get("create", 0) + 1
    assert memory_calendars.writes["update"] == writes.get("update", 0) + 1
    assert memory_calendars.writes["delete"] == writes.get("delete", 0)
    assert foreign() == foreign_before
    assert (tmp_path / "feeds" / "T1-ics.ics").read_text() == feed
    assert event_of(memory_calendars, scene.pending).event == pending_before
    misfiled = ledger(db_url)[(scene.misfiled, "memory")]
    assert (misfiled.state, misfiled.remote_id) == (LedgerState.SYNCED, scene.gym)

    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    assert run.name == "drift-repair-all-2026-12-01+14d"
    [table] = [a for a in artifacts if a.key == "drift-repair-all"]
    data = table.data if isinstance(table.data, list) else json.loads(str(table.data))
    rows = {(r["appointment"], r["drift found"]): r["action"] for r in data}
    assert rows == {
        (scene.deleted, "deleted by hand"): "re-created",
        (scene.edited, "edited by hand"): "restored",
        (scene.misfiled, "not ours"): (
            "left alone: the event does not carry our stamp for this job"
        ),
    }

    # Nothing is left to repair.
    again = drift_repair(as_of=DAY)
    assert (again.deleted, again.edited, again.repaired) == (0, 0, 0)
    assert memory_calendars.writes["create"] + memory_calendars.writes["update"] == (
        writes.get("create", 0) + writes.get("update", 0) + 2
    )


def test_a_pending_reassignment_is_left_to_the_sync(
    db_url: str, scene: Scene, memory_calendars: MemoryBackend
) -> None:
    """Deleted by hand from T1's calendar while the job was being moved to T2: the event is
    not put back on T1's calendar, and T2's copy waits for the sync that moves the job."""
    with session_scope(db_url) as s:
        add_technician(s, "T2")
        apply_change(s, scene.deleted, AppointmentChange(technician_id="T2"))
    del memory_calendars.events("T1-memory")[event_of(memory_calendars, scene.deleted).remote_id]
    writes = dict(memory_calendars.writes)

    result = drift_repair(as_of=DAY)

    [repair] = [r for r in result.repairs if r.check.drift is Drift.DELETED]
    assert repair.action == "not re-created: the job no longer belongs on this calendar"
    assert dict(memory_calendars.writes) == writes
    assert memory_calendars.live_events("T2-memory") == []
    assert ledger(db_url)[(scene.deleted, "memory")].state == LedgerState.DELETED


def test_platforms_that_cannot_read_are_skipped_and_named(
    db_url: str, scene: Scene, memory_calendars: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    class WriteOnly(MemoryConnector):
        supports_read: ClassVar[bool] = False

    def factory(binding: BindingView) -> CalendarConnector:
        return WriteOnly() if binding.platform == "ics" else connector_for(binding)

    monkeypatch.setattr("tasks.drift_tasks.connector_for", factory)
    scene.meddle()

    result = drift_repair(as_of=DAY)

    assert result.skipped_platforms == ["ics"]
    assert (result.unchecked, result.checked) == (4, 4)
    assert (result.deleted, result.edited, result.repaired) == (1, 1, 2)
    assert "cannot read back: ics" in result.summary
    [skipped] = {r.action for r in result.repairs if r.check.drift is None}
    assert skipped == "skipped: ics cannot read events back"


def test_platform_filter_checks_only_that_platform(
    db_url: str, scene: Scene, memory_calendars: MemoryBackend
) -> None:
    scene.meddle()
    result = drift_repair(platform="ics", as_of=DAY)
    assert {r.check.watched.binding.platform for r in result.repairs} == {"ics"}
    assert (result.checked, result.in_step) == (4, 4)
    # The memory calendar's drift waits for its own run.
    assert not [e for e in memory_calendars.live_events("T1-memory") if e.job_id == scene.deleted]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"platform": "gogle"}, "unknown platform 'gogle'"),
        ({"days_ahead": 0}, "days_ahead must be at least 1"),
        ({"as_of": DAY.replace(tzinfo=None)}, "as_of .* has no time zone"),
    ],
)
def test_bad_parameters_fail_clearly(db_url: str, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        drift_repair(**kwargs)


# --- plain functions ---------------------------------------------------------------------------

EVENT = sample_event("J-1")
BINDING = BindingView(7, "T1", "google", "cal-1")
WATCHED = Watched(1, "J-1", BINDING, "r-1", '"1"', EVENT.content_hash(), EVENT.start)


def remote(job_id: str | None = "J-1", event: Any = EVENT) -> RemoteEvent:
    return RemoteEvent(RemoteRef("r-1", '"2"'), job_id, event)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, Drift.DELETED),
        (remote(event=replace(EVENT, status="cancelled")), Drift.DELETED),
        (remote(event=replace(EVENT, summary="Lunch")), Drift.EDITED),
        (remote(event=None), Drift.EDITED),  # ours, but edited beyond what can be decoded
        (remote(job_id=None, event=None), Drift.NOT_OURS),
        (remote(job_id="J-2"), Drift.NOT_OURS),
        (remote(), Drift.NONE),
    ],
)
def test_classify(found: RemoteEvent | None, expected: Drift) -> None:
    assert classify(WATCHED, found) is expected


def test_judge_says_what_happened() -> None:
    deleted = Check(WATCHED, Drift.DELETED)
    synced = (LedgerState.SYNCED, "hash", None)
    assert judge(deleted, synced, dry_run=False, marked=True).action == "re-created"
    failed = judge(deleted, (LedgerState.FAILED, None, "503"), dry_run=False, marked=True)
    assert (failed.ok, failed.action) == (False, "re-create failed: 503")
    held = judge(deleted, (LedgerState.DELETED, None, None), dry_run=False, marked=True,
                 held={"J-1"})  # fmt: skip
    assert not held.ok and "conflict policy" in held.action
    broken = judge(deleted, (LedgerState.DELETED, None, None), dry_run=False, marked=True,
                   push_error="no credentials block")  # fmt: skip
    assert (broken.ok, broken.action) == (False, "re-create failed: no credentials block")
    assert judge(Check(WATCHED, Drift.EDITED), None, dry_run=False, marked=False).ok


class _Flaky(MemoryConnector):
    def read(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        raise TransientError("503 token=abc123secret", platform="memory", status=503)


def test_read_remote_reports_unreadable_calendars_per_event_and_goes_on() -> None:
    ours = Watched(2, "J-2", BindingView(8, "T1", "memory", "cal-2"), "r-2", None, None, DAY)
    broken = Watched(3, "J-3", BindingView(9, "T1", "outlook", "box", "graph/x"), "r", None,
                     None, DAY)  # fmt: skip

    def factory(binding: BindingView) -> CalendarConnector:
        if binding.platform == "outlook":
            raise ValueError("block graph/x not found")
        return _Flaky()

    checks = read_remote([ours, broken], factory)
    assert [c.watched.row_id for c in checks] == [2, 3]
    assert all(c.drift is None for c in checks)
    assert checks[0].note.startswith("read failed: memory: 503")
    assert "abc123secret" not in checks[0].note
    assert checks[1].note == "not checked: block graph/x not found"


def test_mark_leaves_a_row_that_changed_since_it_was_read(db_url: str, scene: Scene) -> None:
    row = ledger(db_url)[(scene.deleted, "memory")]
    watched = Watched(
        row.id, row.appointment_id, BindingView(row.binding_id, "T1", "memory", "T1-memory"),
        row.remote_id or "", row.etag, row.content_hash, DAY,
    )  # fmt: skip
    stale = replace(watched, content_hash="an older hash")
    with session_scope(db_url) as s:
        assert drift.mark(s, [Check(stale, Drift.DELETED)]) == []
    assert ledger(db_url)[(scene.deleted, "memory")].state == LedgerState.SYNCED
    with session_scope(db_url) as s:
        assert len(drift.mark(s, [Check(watched, Drift.DELETED)])) == 1
    assert ledger(db_url)[(scene.deleted, "memory")].state == LedgerState.DELETED
