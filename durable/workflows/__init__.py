"""Workflow definitions in Python and YAML, and loading them from files."""

from durable.core.schedule import Schedule
from durable.workflows.context import TaskContext, TaskLog
from durable.workflows.loader import LoadedWorkflow, WorkflowRegistry, load_workflows
from durable.workflows.python import Param, TaskRef, Workflow

__all__ = [
    "LoadedWorkflow",
    "Param",
    "Schedule",
    "TaskContext",
    "TaskLog",
    "TaskRef",
    "Workflow",
    "WorkflowRegistry",
    "load_workflows",
]
