"""durable: durable, event-sourced workflow orchestration for data pipelines.

What a pipeline author imports: workflows, params, schedules and trigger rules, the task
context, the error a task raises to say whether a retry can help, and notifications and
SLAs.
"""

from durable.core.errors import TaskError
from durable.core.kafka import KafkaTrigger
from durable.core.s3 import S3Trigger, WebhookTrigger
from durable.core.schedule import Schedule
from durable.core.sla import Sla
from durable.workflows import Param, TaskContext, Workflow
from durable.workflows.notify import Email, PagerDuty, Slack, Webhook

__all__ = [
    "Email",
    "KafkaTrigger",
    "PagerDuty",
    "Param",
    "S3Trigger",
    "Schedule",
    "Sla",
    "Slack",
    "TaskContext",
    "TaskError",
    "Webhook",
    "WebhookTrigger",
    "Workflow",
]
__version__ = "0.1.0"
