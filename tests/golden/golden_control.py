"""Golden histories of operators' commands: pause, resume and cancel a run; a rerun queued
while a run is going."""

from __future__ import annotations

from durable import Workflow

control = Workflow("golden_control")
hold = control.shell("hold", "sleep 1.5")
control.shell("next", "sleep 30", after=[hold])

queue = Workflow("golden_queue")
work = queue.shell("work", "sleep 1")
queue.shell("done", "echo done", after=[work])
