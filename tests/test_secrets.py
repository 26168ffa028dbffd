"""A failing run leaks no secret: every log line (ours, Prefect's, the libraries'), every
artifact, every exception text and every ledger error is searched for the credentials."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from pydantic import SecretStr
from sqlalchemy import select

from benchmarks.dataset import DAY, build
from blocks.caldav import CalDavCredentials
from blocks.google import GoogleCalendarCredentials
from blocks.microsoft import MicrosoftGraphCredentials
from fieldsync.store.db import session_scope
from fieldsync.store.tables import SyncLedger
from flows.common import SyncFailed
from flows.shift_start import shift_start_sync
from tests.caldav_servers import start_radicale
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph, tls_material

pytestmark = pytest.mark.usefixtures("prefect_harness")

GOOGLE_SECRET = "gOCSPX-client-secret-4f9a1c"
GOOGLE_REFRESH = "1//0refresh-token-never-print-8d2e"
GRAPH_WRONG_SECRET = "wr0ng~Graph.Secret_value-77c1"
CALDAV_WRONG_PASSWORD = "Wrong-Radicale-Pass-5510"


@pytest.fixture
def failing_platforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Three platforms whose credentials are refused: a revoked Google refresh token, a wrong
    Graph client secret, a wrong CalDAV password. Returns the secret strings."""
    google = FakeGoogleCalendar().start()
    google.add_oauth_client("client-1.apps", GOOGLE_SECRET, GOOGLE_REFRESH, "t00000@acme.example")
    google.invalid_grant = True  # the refresh token was revoked
    GoogleCalendarCredentials(
        client_id="client-1.apps",
        client_secret=SecretStr(GOOGLE_SECRET),
        refresh_token=SecretStr(GOOGLE_REFRESH),
        token_uri=google.token_uri,
        api_base_url=google.base_url,
    ).save("leak-google", overwrite=True)

    graph = FakeGraph().start()
    bundle = tmp_path / "ca.pem"
    bundle.write_text(Path(certifi.where()).read_text() + tls_material().cert_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    graph.add_mailbox("t00000@acme.example")
    MicrosoftGraphCredentials(
        tenant_id=graph.tenant_id,
        client_id=graph.client_id,
        client_secret=SecretStr(GRAPH_WRONG_SECRET),
        authority_host=graph.base_url,
        api_base_url=graph.api_base_url,
    ).save("leak-graph", overwrite=True)

    dav = start_radicale(password="the-real-password-123")
    dav.new_calendar("t00000-jobs")
    CalDavCredentials(
        server_url=dav.base_url, username=dav.username, password=SecretStr(CALDAV_WRONG_PASSWORD)
    ).save("leak-caldav", overwrite=True)
    basic = base64.b64encode(f"{dav.username}:{CALDAV_WRONG_PASSWORD}".encode()).decode()
    try:
        yield [GOOGLE_SECRET, GOOGLE_REFRESH, GRAPH_WRONG_SECRET, CALDAV_WRONG_PASSWORD, basic]
    finally:
        google.stop()
        graph.stop()
        dav.stop()


def test_a_failing_run_shows_no_secret_anywhere(
    failing_platforms: list[str], sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calendars = {
        "google": "t00000@acme.example",
        "outlook": "t00000@acme.example",
        "caldav": "t00000-jobs",
    }
    build(
        sqlite_url, 1, 3, tuple(calendars),
        calendar_for=lambda tech, platform: calendars[platform],
        blocks={
            "google": "fieldsync-google-calendar/leak-google",
            "outlook": "fieldsync-microsoft-graph/leak-graph",
            "caldav": "fieldsync-caldav-calendar/leak-caldav",
        },
    )  # fmt: skip
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SyncFailed) as failure:
        shift_start_sync(DAY.date())
    state = shift_start_sync(DAY.date(), return_state=True)
    assert state.is_failed()
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)

    texts = [r.getMessage() for r in caplog.records]
    texts += ["".join(traceback.format_exception(failure.value))]
    texts += [str(failure.value)]
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        assert run_id is not None
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    texts += [log.message for log in logs]
    texts += [json.dumps(a.data, default=str) for a in artifacts]
    with session_scope(sqlite_url) as s:
        errors = [e for e in s.scalars(select(SyncLedger.last_error)) if e]
    texts += errors

    # The failure itself is told plainly: which platforms, and that credentials are the cause.
    message = str(failure.value)
    assert "google" in message and "outlook" in message and "caldav" in message
    assert any("re-authorize" in e.lower() for e in errors), errors
    assert len(logs) > 10 and artifacts, "the run's logs and artifacts were captured"
    for secret in failing_platforms:
        leaks = [t for t in texts if secret in t]
        assert leaks == [], f"secret leaked into: {leaks[0][:300]}"
