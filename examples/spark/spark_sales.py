"""One day's orders into Parquet with Spark: `spark-submit` runs the PySpark job in
``jobs/``, durable waits for it without holding a slot, and reattaches to it after a crash.

    durable run spark_sales --workflows examples/spark --param date=2026-11-19 --here

The job overwrites only its date's partition (``sales_parquet/date=2026-11-19/``), so a
date runs again without duplicates; its result (rows, path) is the task's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from durable import Param, Workflow

HERE = Path(__file__).resolve().parent

wf = Workflow(
    "spark_sales",
    params={
        "date": Param("date", required=True, description="the day to load, YYYY-MM-DD"),
        "input": Param(default=str(HERE / "orders.csv"), description="the orders CSV"),
        "output": Param(default="sales_parquet", description="the Parquet dataset's folder"),
        "master": Param(default="local[*]", description="where Spark runs"),
    },
    description="A day's orders from CSV into Parquet partitioned by date, with Spark.",
)

load_orders = wf.spark(
    "load_orders",
    str(HERE / "jobs" / "sales_to_parquet.py"),
    args=["--input", "${params.input}", "--output", "${params.output}", "--date", "${params.date}"],
    master="${params.master}",
    conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"},
    retries=1,
    timeout=1800,
)


@wf.task(after=[load_orders])
def report(load_orders: dict[str, Any]) -> str:
    return f"{load_orders['rows']} orders of {load_orders['date']} in {load_orders['path']}"
