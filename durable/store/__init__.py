"""Event stores: PostgreSQL (production, embedded) and in-memory (tests)."""

from durable.store.base import EventStore, Progress, RunFilter
from durable.store.database import Database, resolve_database
from durable.store.memory import MemoryEventStore
from durable.store.postgres import PostgresEventStore, connect

__all__ = [
    "Database",
    "EventStore",
    "MemoryEventStore",
    "PostgresEventStore",
    "Progress",
    "RunFilter",
    "connect",
    "resolve_database",
]
