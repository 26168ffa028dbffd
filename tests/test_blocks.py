from __future__ import annotations

import importlib

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites.blocks import BlockStandardTestSuite

from blocks import (
    CalDavCredentials,
    EmailAlerts,
    FieldsyncDatabase,
    GoogleCalendarCredentials,
    GoogleWorkspaceCredentials,
    ICloudCalendarCredentials,
    IcsFeedCalendar,
    MemoryCalendar,
    MicrosoftGraphCredentials,
    SlackAlerts,
    WebhookAlerts,
)
from connectors.errors import AuthError
from connectors.ics_feed import IcsFeedConnector
from connectors.memory import MemoryConnector
from fieldsync.domain import BindingView
from tasks.connectors import connector_for

ALL_BLOCKS = [
    IcsFeedCalendar,
    MemoryCalendar,
    FieldsyncDatabase,
    CalDavCredentials,
    ICloudCalendarCredentials,
    GoogleCalendarCredentials,
    GoogleWorkspaceCredentials,
    MicrosoftGraphCredentials,
    SlackAlerts,
    EmailAlerts,
    WebhookAlerts,
]


@pytest.mark.parametrize("block", ALL_BLOCKS)
class TestStandardSuite(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block


@pytest.mark.parametrize("block", ALL_BLOCKS)
def test_slug_is_explicit(block: type[Block]) -> None:
    assert block.__dict__.get("_block_type_slug", "").startswith("fieldsync-")


@pytest.mark.usefixtures("prefect_harness")
def test_blocks_register_save_and_build_connectors(tmp_path) -> None:
    from prefect.cli.block import _register_blocks_in_module
    from prefect.utilities.asyncutils import run_coro_as_sync

    # What `prefect block register -m blocks` does: every block the package exports.
    registered: set[type[Block]] = set(
        run_coro_as_sync(_register_blocks_in_module(importlib.import_module("blocks"))) or []
    )
    assert set(ALL_BLOCKS) <= registered

    IcsFeedCalendar(directory=str(tmp_path)).save("test-feeds", overwrite=True)
    binding = BindingView(1, "T1", "ics", "T1", "fieldsync-ics-feed/test-feeds")
    conn = connector_for(binding)
    assert isinstance(conn, IcsFeedConnector)
    assert isinstance(connector_for(BindingView(2, "T1", "memory", "c")), MemoryConnector)

    wrong = BindingView(3, "T1", "memory", "c", "fieldsync-ics-feed/test-feeds")
    with pytest.raises(AuthError, match="not a memory calendar block"):
        connector_for(wrong)
    with pytest.raises(AuthError, match="names no credentials block"):
        connector_for(BindingView(4, "T1", "google", "alice@example.com"))


@pytest.mark.usefixtures("prefect_harness")
def test_database_url_stays_secret() -> None:
    secret = "postgresql+psycopg://svc:hunter2-very-secret@db:5432/fieldsync"
    block = FieldsyncDatabase(url=secret)
    block.save("test-db", overwrite=True)
    assert "hunter2" not in repr(block) and "hunter2" not in str(block.model_dump())
    loaded: FieldsyncDatabase = FieldsyncDatabase.load("test-db")  # type: ignore[assignment]
    assert loaded.url.get_secret_value() == secret
