from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from blocks.base import CalendarBlock
from connectors.base import CalendarConnector
from connectors.ics_feed import IcsFeedConnector


class IcsFeedCalendar(CalendarBlock):
    """Per-technician iCalendar (.ics) feeds written to a folder, for any calendar app that
    subscribes by URL. Needs no account: the embedded default target."""

    _block_type_name = "fieldsync ICS feed"
    _block_type_slug = "fieldsync-ics-feed"
    _code_example = """
```python
from blocks.ics_feed import IcsFeedCalendar

ics_feed_calendar = IcsFeedCalendar.load("BLOCK_NAME")
connector = ics_feed_calendar.connector()
```
"""
    platform: ClassVar[str] = "ics"

    directory: str = Field(
        default="var/feeds",
        description="Folder the .ics files are written to, one file per technician calendar.",
    )
    public_base_url: str | None = Field(
        default=None,
        description="Base URL the folder is served under, used to print subscription links.",
    )

    def connector(self) -> CalendarConnector:
        return IcsFeedConnector(Path(self.directory))
