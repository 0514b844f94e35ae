"""durable: durable, event-sourced workflow orchestration for data pipelines."""

from durable.schedule import Schedule
from durable.workflows import Param, TaskContext, Workflow

__all__ = ["Param", "Schedule", "TaskContext", "Workflow"]
__version__ = "0.1.0"
