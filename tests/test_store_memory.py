from __future__ import annotations

import pytest

from durable.store import MemoryEventStore
from tests.store_contract import StoreContract
from tests.store_tables_contract import TablesContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryEventStore:
        return MemoryEventStore()


class TestMemoryTables(TablesContract):
    transactional = False

    @pytest.fixture
    def store(self) -> MemoryEventStore:
        return MemoryEventStore()
