"""The executor as a deployable process (what the container runs).

Configuration comes from the environment: DURABLE_DATABASE_URL (required here: a
container has no embedded database worth keeping), DURABLE_WORKFLOWS, DURABLE_MAX_TASKS,
DURABLE_MAX_RUNS, DURABLE_LEASE_SECONDS, DURABLE_TASK_LOG_MAX_BYTES, DURABLE_NOTIFICATIONS
(global notification rules) and DURABLE_BASE_URL (the console's URL, for links in
notifications). SIGTERM stops it cleanly: runs are let go and other executors take them
over.
"""

import os
import sys

from durable.cli import main

if __name__ == "__main__":
    if not os.environ.get("DURABLE_DATABASE_URL"):
        sys.exit("error: set DURABLE_DATABASE_URL (postgresql://user:password@host/db)")
    main(["up"])
