"""Golden history: the executor dies (kill -9) during an attempt; the next one takes the
run over and retries the lost attempt."""

from __future__ import annotations

from _compat import QUICK

from durable import Workflow

wf = Workflow("golden_crash")
long = wf.shell("long", "sleep 3", retry=QUICK)
wf.shell("after_long", "echo after", after=[long])
