"""Shared fixtures: one Prefect harness for the session, and stores on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Before any flow module is imported: push retries without waiting, so retry tests stay fast.
os.environ.setdefault("FIELDSYNC_PUSH_RETRY_DELAYS", "0,0,0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# HTTP backoff waits shrink a hundredfold against local fakes (Retry-After included).
os.environ.setdefault("FIELDSYNC_HTTP_BACKOFF_SCALE", "0.01")

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from fieldsync.store.db import engine_for, migrate, session_scope
from tests.pg import PG_ADMIN_URL, drop_database, fresh_database


def _pg_available() -> bool:
    try:
        with create_engine(PG_ADMIN_URL).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; CI requires it")
        pytest.skip("PostgreSQL is not reachable")
    return PG_ADMIN_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A migrated, empty store on each backend; DATABASE_URL points at it for the test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fieldsync.db'}"
        migrate(url)
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        engine_for(url).dispose()
        return
    admin = request.getfixturevalue("pg_server")
    url = fresh_database(admin)
    migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    drop_database(admin, url)


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """SQLite only, for tests whose logic does not depend on the backend."""
    url = f"sqlite:///{tmp_path / 'fieldsync.db'}"
    migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    with session_scope(db_url) as s:
        yield s


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (it costs seconds to start).

    Like `prefect_test_harness`, but backed by PostgreSQL when it is reachable: on SQLite the
    server's own writers collide ("database is locked") and stall flow runs for seconds.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import _find_available_port, prefect_test_harness

    # Heartbeats detect crashed runs in production; in tests their thread only adds up to a
    # second of join time to every flow run.
    no_heartbeat = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if not _pg_available():
        with prefect_test_harness(server_startup_timeout=120), temporary_settings(no_heartbeat):
            yield
        return
    url = fresh_database(PG_ADMIN_URL)
    server_db = url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    previous = SubprocessASGIServer._instances.get(None)
    try:
        with (
            temporary_database_interface(),
            temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: server_db}),
        ):
            server = SubprocessASGIServer(port=_find_available_port())
            SubprocessASGIServer._instances[None] = server
            server.start(timeout=120)
            try:
                with temporary_settings({PREFECT_API_URL: server.api_url, **no_heartbeat}):
                    yield
                    # Flush logs and events while the server is still there to take them.
                    APILogWorker.drain_all(timeout=10)
                    EventsWorker.drain_all(timeout=10)
            finally:
                server.stop()
    finally:
        if previous is None:
            SubprocessASGIServer._instances.pop(None, None)
        else:
            SubprocessASGIServer._instances[None] = previous
        drop_database(PG_ADMIN_URL, url)


@pytest.fixture
def memory_calendars() -> Iterator[object]:
    from connectors.memory import backend

    b = backend("default")
    b.reset()
    yield b
    b.reset()
