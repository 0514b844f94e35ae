"""durable: durable, event-sourced workflow orchestration for data pipelines.

What a pipeline author imports: workflows, params, schedules and trigger rules, the task
context, and the error a task raises to say whether a retry can help.
"""

from durable.core.errors import TaskError
from durable.core.kafka import KafkaTrigger
from durable.core.s3 import S3Trigger, WebhookTrigger
from durable.core.schedule import Schedule
from durable.workflows import Param, TaskContext, Workflow

__all__ = [
    "KafkaTrigger",
    "Param",
    "S3Trigger",
    "Schedule",
    "TaskContext",
    "TaskError",
    "WebhookTrigger",
    "Workflow",
]
__version__ = "0.1.0"
