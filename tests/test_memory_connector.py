from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from connectors.memory import MemoryConnector, backend
from tests.contract.connector_contract import ConnectorContract


class TestMemoryContract(ConnectorContract):
    @pytest.fixture
    def connector(self) -> Iterator[MemoryConnector]:
        name = f"contract-{uuid.uuid4().hex}"
        yield MemoryConnector(name)
        backend(name).reset()

    @pytest.fixture
    def calendar_id(self) -> str:
        return "tech-1"

    @pytest.fixture
    def plant_foreign(self, connector: MemoryConnector) -> Callable[[str, datetime, datetime], str]:
        return connector.backend.plant_foreign
