"""Build the connector for a calendar binding, from its credentials block when it names one."""

from __future__ import annotations

from prefect.blocks.core import Block

from blocks.base import CalendarBlock
from connectors.base import CalendarConnector
from connectors.errors import AuthError
from connectors.ics_feed import IcsFeedConnector
from connectors.memory import MemoryConnector
from fieldsync import settings
from fieldsync.domain import BindingView


def connector_for(binding: BindingView) -> CalendarConnector:
    """`credentials_block` holds a block document name ("block-type-slug/name"). Platforms
    that need no account (ICS feeds, in-memory) fall back to embedded defaults without one."""
    if binding.credentials_block:
        block = Block.load(binding.credentials_block)
        if not isinstance(block, CalendarBlock) or block.platform != binding.platform:
            raise AuthError(
                f"block {binding.credentials_block!r} is not a {binding.platform} calendar block",
                platform=binding.platform,
            )
        connector: CalendarConnector = block.connector()
        return connector
    if binding.platform == "ics":
        return IcsFeedConnector(settings.feed_dir())
    if binding.platform == "memory":
        return MemoryConnector()
    raise AuthError(
        f"calendar {binding.calendar_id} of technician {binding.technician_id} names no "
        "credentials block; add one to its calendar binding",
        platform=binding.platform,
    )
