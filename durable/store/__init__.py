"""The store: every table behind narrow typed protocols, on PostgreSQL (production, the
embedded database) or in memory (pure executor tests)."""

from durable.store.base import (
    Archives,
    EventLog,
    EventStore,
    Lead,
    Leadership,
    Leases,
    Progress,
    RunFilter,
    RunsView,
    TaskLogs,
    Tokens,
    Tracking,
    Versions,
    WakeUps,
    Watch,
)
from durable.store.database import Database, resolve_database
from durable.store.memory import MemoryEventStore
from durable.store.postgres import PostgresEventStore, connect

__all__ = [
    "Archives",
    "Database",
    "EventLog",
    "EventStore",
    "Lead",
    "Leadership",
    "Leases",
    "MemoryEventStore",
    "PostgresEventStore",
    "Progress",
    "RunFilter",
    "RunsView",
    "TaskLogs",
    "Tokens",
    "Tracking",
    "Versions",
    "WakeUps",
    "Watch",
    "connect",
    "resolve_database",
]
