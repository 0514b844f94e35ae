"""durable: durable, event-sourced workflow orchestration for data pipelines."""

__version__ = "0.1.0"
