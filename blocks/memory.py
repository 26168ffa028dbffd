from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from blocks.base import CalendarBlock
from connectors.base import CalendarConnector
from connectors.memory import MemoryConnector


class MemoryCalendar(CalendarBlock):
    """In-process calendars that vanish when the process ends: for tests, benchmarks and dry
    runs of a sync without touching a real platform."""

    _block_type_name = "fieldsync in-memory calendar"
    _block_type_slug = "fieldsync-memory-calendar"
    _code_example = """
```python
from blocks.memory import MemoryCalendar

memory_calendar = MemoryCalendar.load("BLOCK_NAME")
connector = memory_calendar.connector()
```
"""
    platform: ClassVar[str] = "memory"

    backend_name: str = Field(
        default="default",
        description="Name of the in-process calendar store; connectors sharing it see one state.",
    )

    def connector(self) -> CalendarConnector:
        return MemoryConnector(self.backend_name)
