"""What ops see in the Prefect UI: run names, table artifacts, alert events."""

from __future__ import annotations

from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact, FlowRun

from connectors.memory import MemoryBackend
from fieldsync.store.db import session_scope
from fieldsync.store.tables import Appointment
from flows.booked import appointment_booked
from flows.shift_start import shift_start_sync
from tests.factories import DAY, add_appointment, add_technician

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _run_and_artifacts(flow_run_id: UUID | None) -> tuple[FlowRun, list[Artifact]]:
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        return run, list(artifacts)


def test_runs_are_named_and_leave_push_and_conflict_tables(
    sqlite_url: str, memory_calendars: MemoryBackend
) -> None:
    with session_scope(sqlite_url) as s:
        add_technician(s, "T7", region="north")
        first: Appointment = add_appointment(s, "T7", hour=9)
        add_appointment(s, "T7", hour=9.5)  # overlaps the first
        first_id = first.id
    state = appointment_booked(first_id, return_state=True)
    run, artifacts = _run_and_artifacts(state.state_details.flow_run_id)
    assert run.name == f"appointment-booked-{first_id}"
    tables = {a.key: a for a in artifacts}
    pushes = tables[f"booked-{first_id.lower()}-pushes"]
    assert "memory" in str(pushes.data)
    assert f"booked-{first_id.lower()}-conflicts" in tables

    state = shift_start_sync(DAY.date(), region="north", return_state=True)
    run, _ = _run_and_artifacts(state.state_details.flow_run_id)
    assert run.name == "shift-start-2026-12-01-north"
