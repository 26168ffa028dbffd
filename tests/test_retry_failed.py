"""The analysts' retry: only ledger items still failed are pushed, narrowed by the filters."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import select, update

from connectors.errors import PermanentError
from connectors.memory import MemoryBackend
from fieldsync.domain import LedgerState
from fieldsync.parameters import BadRequest
from fieldsync.store.changes import AppointmentChange, apply_change
from fieldsync.store.db import session_scope
from fieldsync.store.reads import NotFoundInStore
from fieldsync.store.tables import SyncLedger
from fieldsync.sync.failed import FailedFilter, FailedItem, classify, select_failed
from fieldsync.sync.push_lock import binding_locks
from flows.common import SyncFailed
from flows.modified import appointment_modified
from flows.retry_failed import retry_failed_pushes
from flows.shift_start import shift_start_sync
from tests.factories import DAY, add_appointment, add_job_type, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


def rows(db_url: str) -> dict[tuple[str, str], SyncLedger]:
    """Ledger rows by (appointment, platform) — each test technician has one calendar each."""
    with session_scope(db_url) as s:
        return {(r.appointment_id, r.platform): r for r in s.scalars(select(SyncLedger))}


def notes_on(cal: MemoryBackend, calendar_id: str, job_id: str) -> str:
    [event] = [e for e in cal.live_events(calendar_id) if e.job_id == job_id]
    assert event.event is not None
    return event.event.description


def event_status(cal: MemoryBackend, job_id: str) -> str:
    [event] = [e for e in cal.live_events("T1-memory") if e.job_id == job_id]
    return event.status


def set_notes(db_url: str, job_id: str, notes: str) -> None:
    """A change the store holds but no sync has pushed yet."""
    with session_scope(db_url) as s:
        apply_change(s, job_id, AppointmentChange(notes=notes))


def fail_rows(db_url: str, *keys: tuple[str, str]) -> None:
    """Record items as failed, as a push refused by the platform leaves them."""
    with session_scope(db_url) as s:
        for appointment_id, platform in keys:
            s.execute(
                update(SyncLedger)
                .where(SyncLedger.appointment_id == appointment_id)
                .where(SyncLedger.platform == platform)
                .values(state=LedgerState.FAILED, last_error=f"{platform}: 503 try later")
            )


@pytest.fixture
def synced(
    db_url: str, memory_calendars: MemoryBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """T1 on memory and an ICS feed, T2 on memory; three jobs, all synced."""
    monkeypatch.setenv("FIELDSYNC_FEED_DIR", str(tmp_path / "feeds"))
    with session_scope(db_url) as s:
        add_job_type(s)
        add_technician(s, "T1", platforms=("memory", "ics"))
        add_technician(s, "T2")
        ids = {
            "a": add_appointment(s, "T1", hour=8).id,
            "b": add_appointment(s, "T1", hour=11).id,
            "c": add_appointment(s, "T2", hour=9).id,
            "late": add_appointment(s, "T2", hour=9, day=DAY + timedelta(days=1)).id,
        }
    shift_start_sync(DAY.date())
    shift_start_sync((DAY + timedelta(days=1)).date())
    assert {r.state for r in rows(db_url).values()} == {LedgerState.SYNCED}
    return ids


def test_retry_pushes_only_the_failed_item_not_pending_changes_around_it(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend, tmp_path: Path
) -> None:
    a, b, c = synced["a"], synced["b"], synced["c"]
    memory_calendars.fail_next = [PermanentError("calendar is read-only", platform="memory")]
    with pytest.raises(SyncFailed, match="read-only"):
        appointment_modified(a, AppointmentChange(notes="Dog in yard"))
    assert rows(db_url)[(a, "memory")].state == LedgerState.FAILED
    assert rows(db_url)[(a, "ics")].state == LedgerState.SYNCED  # the feed took the edit

    # Changes nobody has synced yet: the same job (its feed event), a neighbour on the same
    # calendar, and another technician's job on the same platform.
    set_notes(db_url, a, "Ring twice")
    set_notes(db_url, b, "Neighbour change")
    set_notes(db_url, c, "Other technician change")
    feed = (tmp_path / "feeds" / "T1-ics.ics").read_text()
    ics_before = rows(db_url)[(a, "ics")]
    writes_before = dict(memory_calendars.writes)

    result = retry_failed_pushes(platform="memory")

    assert (result.found, result.pushed, result.still_failed) == (1, 1, 0)
    [item] = result.items
    assert (item.item.appointment_id, item.outcome) == (a, "pushed")
    # The failed item went out with the job as it is now ...
    assert "Notes: Ring twice" in notes_on(memory_calendars, "T1-memory", a)
    assert rows(db_url)[(a, "memory")].state == LedgerState.SYNCED
    # ... and nothing else was written: one update, on that calendar, for that job.
    assert memory_calendars.writes["update"] == writes_before.get("update", 0) + 1
    assert memory_calendars.writes["create"] == writes_before.get("create", 0)
    assert "Neighbour change" not in notes_on(memory_calendars, "T1-memory", b)
    assert "Other technician change" not in notes_on(memory_calendars, "T2-memory", c)
    assert (tmp_path / "feeds" / "T1-ics.ics").read_text() == feed
    ics_after = rows(db_url)[(a, "ics")]
    assert (ics_after.content_hash, ics_after.etag) == (ics_before.content_hash, ics_before.etag)

    # The normal sync still finds those pending changes: the retry did not swallow them.
    # b on memory and ics, a on ics, c on memory
    assert shift_start_sync(DAY.date()).writes == 4


def test_a_pending_reassignment_on_the_same_platform_is_not_pushed_by_the_retry(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    """Same job, same platform, another calendar: only the failed pair goes out."""
    a = synced["a"]
    fail_rows(db_url, (a, "memory"))
    set_notes(db_url, a, "Ring twice")
    with session_scope(db_url) as s:  # moved to T2; no sync has run since
        apply_change(s, a, AppointmentChange(technician_id="T2"))

    result = retry_failed_pushes(platform="memory")

    # The failed item is T1's event: the job no longer belongs there, so it is removed ...
    assert [(o.item.technician_id, o.outcome) for o in result.items] == [("T1", "removed")]
    assert a not in [e.job_id for e in memory_calendars.live_events("T1-memory")]
    # ... while creating it on T2's calendar is the sync's business, not the retry's.
    assert a not in [e.job_id for e in memory_calendars.live_events("T2-memory")]
    assert memory_calendars.writes["create"] == 4  # the four jobs' first pushes only
    result_sync = shift_start_sync(DAY.date())
    assert result_sync.report("memory").created == 1
    assert a in [e.job_id for e in memory_calendars.live_events("T2-memory")]


def test_filters_choose_which_failed_items_are_retried(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    a, b, c, late = synced["a"], synced["b"], synced["c"], synced["late"]
    fail_rows(db_url, (a, "memory"), (a, "ics"), (b, "memory"), (c, "memory"), (late, "memory"))

    # Platform and technician: T2's memory calendar only (c and late).
    result = retry_failed_pushes(platform="memory", technician_id="T2")
    assert sorted(o.item.appointment_id for o in result.items) == sorted([c, late])
    assert result.pushed == 2
    # Time range [start, end): the first day only, here just b's memory item at 11:00.
    result = retry_failed_pushes(start=DAY + timedelta(hours=10), end=DAY + timedelta(days=1))
    assert [(o.item.appointment_id, o.item.platform) for o in result.items] == [(b, "memory")]
    # Platform alone: a's feed item, not a's memory item.
    result = retry_failed_pushes(platform="ics")
    assert [(o.item.appointment_id, o.item.platform) for o in result.items] == [(a, "ics")]

    left = {k: r.state for k, r in rows(db_url).items() if r.state != LedgerState.SYNCED}
    assert left == {(a, "memory"): LedgerState.FAILED}
    result = retry_failed_pushes()
    assert (result.found, result.pushed) == (1, 1)
    assert {r.state for r in rows(db_url).values()} == {LedgerState.SYNCED}


def test_an_item_that_fails_again_is_reported_with_its_new_error(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    a, c = synced["a"], synced["c"]
    fail_rows(db_url, (a, "memory"), (c, "memory"))
    memory_calendars.fail_next = [PermanentError("quota exhausted for today", platform="memory")]

    result = retry_failed_pushes(platform="memory")

    assert (result.found, result.pushed, result.still_failed) == (2, 1, 1)
    [bad] = [o for o in result.items if not o.ok]
    assert bad.outcome == "still failed" and "quota exhausted" in bad.error
    assert "memory" in result.failures
    assert rows(db_url)[(bad.item.appointment_id, "memory")].state == LedgerState.FAILED


def test_the_conflict_policy_still_applies_to_a_retried_item(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    a = synced["a"]
    fail_rows(db_url, (a, "memory"))
    with session_scope(db_url) as s:  # double-booked since the failed push
        add_appointment(s, "T1", hour=8.5)
    before = [(e.remote_id, e.etag) for e in memory_calendars.live_events("T1-memory")]

    result = retry_failed_pushes(platform="memory", conflict_policy="hold")

    [held] = result.items
    assert (held.ok, held.outcome) == (False, "held back by the conflict policy")
    assert [(e.remote_id, e.etag) for e in memory_calendars.live_events("T1-memory")] == before

    result = retry_failed_pushes(platform="memory")  # the default policy: tentative
    assert result.pushed == 1
    assert event_status(memory_calendars, a) == "tentative"


def test_the_retry_waits_for_another_run_pushing_the_same_calendar(
    db_url: str,
    synced: dict[str, str],
    memory_calendars: MemoryBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = synced["a"]
    fail_rows(db_url, (a, "memory"))
    monkeypatch.setenv("FIELDSYNC_PUSH_LOCK_WAIT", "0.2")
    writes = dict(memory_calendars.writes)

    with binding_locks([rows(db_url)[(a, "memory")].binding_id], db_url):  # a sync mid-push
        busy = retry_failed_pushes(platform="memory")

    [item] = busy.items
    assert not item.ok and "still being pushed by another run" in item.error
    assert dict(memory_calendars.writes) == writes
    assert retry_failed_pushes(platform="memory").pushed == 1  # once the calendar is free


def test_nothing_failed_completes_and_says_so(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    writes = dict(memory_calendars.writes)
    state = retry_failed_pushes(platform="memory", return_state=True)
    assert state.is_completed()
    result = state.result()
    assert (result.found, result.pushed, result.still_failed) == (0, 0, 0)
    assert "nothing" in result.summary
    assert dict(memory_calendars.writes) == writes


def test_run_name_and_table_artifact(
    db_url: str, synced: dict[str, str], memory_calendars: MemoryBackend
) -> None:
    fail_rows(db_url, (synced["a"], "memory"))
    state = retry_failed_pushes(
        platform="memory", technician_id="T1", start=DAY, end=DAY + timedelta(days=1),
        return_state=True,
    )  # fmt: skip
    run_id = state.state_details.flow_run_id
    assert isinstance(run_id, UUID)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    assert run.name == "retry-failed-memory-T1-2026-12-01..2026-12-02"
    [table] = [a for a in artifacts if a.key == "retry-failed-pushes"]
    assert synced["a"] in str(table.data) and "pushed" in str(table.data)
    assert "1 failed items found: 1 pushed, 0 still failed" in (table.description or "")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"platform": "gogle"}, BadRequest, "unknown platform 'gogle'"),
        ({"start": DAY, "end": DAY - timedelta(hours=1)}, BadRequest, "is not after start"),
        ({"start": DAY.replace(tzinfo=None)}, BadRequest, "start .* has no time zone"),
        ({"technician_id": "T404"}, NotFoundInStore, "no technician with id T404"),
    ],
)
def test_bad_parameters_fail_clearly_before_any_push(
    db_url: str,
    synced: dict[str, str],
    memory_calendars: MemoryBackend,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    fail_rows(db_url, (synced["a"], "memory"))
    writes = dict(memory_calendars.writes)
    with pytest.raises(error, match=match):
        retry_failed_pushes(**kwargs)
    assert dict(memory_calendars.writes) == writes
    assert rows(db_url)[(synced["a"], "memory")].state == LedgerState.FAILED


# --- plain functions ---------------------------------------------------------------------------


def test_select_failed_joins_the_binding_owner_not_the_current_technician(
    db_url: str, synced: dict[str, str]
) -> None:
    a = synced["a"]
    fail_rows(db_url, (a, "memory"))
    with session_scope(db_url) as s:
        apply_change(s, a, AppointmentChange(technician_id="T2"))  # reassigned, not yet synced
    with session_scope(db_url) as s:
        assert [i.technician_id for i in select_failed(s, FailedFilter(technician_id="T1"))] == [
            "T1"
        ]
        assert select_failed(s, FailedFilter(technician_id="T2")) == []
        # end is exclusive: an appointment starting exactly at `end` is outside.
        at_a = DAY + timedelta(hours=8)
        assert select_failed(s, FailedFilter(end=at_a)) == []
        assert len(select_failed(s, FailedFilter(start=at_a, end=at_a + timedelta(1)))) == 1


def test_classify_judges_the_row_after_the_push() -> None:
    item = FailedItem(1, "J-1", 2, "T1", "google", "cal", DAY, "old error")
    assert classify(item, LedgerState.SYNCED, None).ok
    assert classify(item, LedgerState.DELETED, None).outcome == "removed"
    assert classify(item, LedgerState.FAILED, "new error").error == "new error"
    assert not classify(item, LedgerState.FAILED, "x", held={"J-1"}).ok
    assert "conflict policy" in classify(item, LedgerState.FAILED, "x", held={"J-1"}).outcome
    broken = classify(item, LedgerState.FAILED, "old error", broken={"google": "no block"})
    assert (broken.ok, broken.error) == (False, "no block")
    assert not classify(item, LedgerState.PENDING, None).ok
