"""durable: durable, event-sourced workflow orchestration for data pipelines."""

from durable.workflows import Param, TaskContext, Workflow

__all__ = ["Param", "TaskContext", "Workflow"]
__version__ = "0.1.0"
