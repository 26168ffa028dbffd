"""What every calendar block offers: the platform it serves and a ready connector."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import HttpUrl

from connectors.base import CalendarConnector


class CalendarBlock(Block, ABC):
    _documentation_url = HttpUrl("https://github.com/fieldsync/fieldsync#calendar-platforms")
    platform: ClassVar[str]

    @abstractmethod
    def connector(self) -> CalendarConnector:
        """A connector ready to push to this platform with these credentials."""
