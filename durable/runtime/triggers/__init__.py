"""Trigger services: sources of events that start runs, each exactly once."""
