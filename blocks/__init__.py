"""Prefect blocks: credentials and configuration; each block builds its connector."""

from blocks.base import CalendarBlock
from blocks.database import FieldsyncDatabase
from blocks.ics_feed import IcsFeedCalendar
from blocks.memory import MemoryCalendar

__all__ = ["CalendarBlock", "FieldsyncDatabase", "IcsFeedCalendar", "MemoryCalendar"]
