"""Sensors in Python: wait for the day's CSV in object storage, then load it.

    csv_landed (sensor: s3) ──> read_csv ──┐
    prepare ───────────────────────────────┴─> load (sql, transactional)

Each morning the schedule starts a run for the day before (``date``, its logical date;
or by hand: ``durable run csv_ingest --param date=2026-11-22``). ``csv_landed`` waits — holding no task slot and no thread between pokes — until
``s3://landing/sales/<date>.csv`` exists, poking at once, then after 60 s,
120 s, 240 s… up to every 10 minutes, for at most 6 hours (kept across executor
restarts). Then ``read_csv`` reads it and ``load`` upserts its rows, in the same
transaction as its completion event. Object storage is the S3 trigger's:

    export DURABLE_S3_ENDPOINT=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…
    durable up --workflows examples
    durable backfill csv_ingest --workflows examples --start 2026-11-20 --end 2026-11-23
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

from durable import Param, Schedule, TaskContext, Workflow

wf = Workflow(
    "csv_ingest",
    params={"date": Param("date", required=True, description="the day (the logical date)")},
    schedule=Schedule(cron="0 6 * * *"),
    description="Waits for the day's sales CSV in S3, then loads it.",
)

prepare = wf.sql(
    "prepare",
    """CREATE TABLE IF NOT EXISTS sales_csv (
           day date NOT NULL, region text NOT NULL, amount_eur numeric NOT NULL,
           PRIMARY KEY (day, region))""",
)

csv_landed = wf.sensor(
    "csv_landed",
    s3={"bucket": "landing", "key": "sales/${params.date}.csv", "min_size": 1},
    timeout=6 * 3600,  # required: a sensor never waits forever
    poke_interval=60,  # then twice as long each time, up to max_poke_interval (10 x 60 s)
)


@wf.task(after=[csv_landed], retries=3, timeout=120)
async def read_csv(ctx: TaskContext, csv_landed: dict[str, Any]) -> list[dict[str, Any]]:
    """The CSV's rows (``region,amount_eur``); the sensor's output names the object."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3",
        endpoint_url=os.environ.get("DURABLE_S3_ENDPOINT"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    ) as s3:
        obj = await s3.get_object(Bucket=csv_landed["bucket"], Key=csv_landed["key"])
        text = (await obj["Body"].read()).decode()
    rows = [
        {"region": r["region"], "amount_eur": float(r["amount_eur"])}
        for r in csv.DictReader(io.StringIO(text))
    ]
    ctx.log.info(
        "read %d rows from %s (%d bytes)", len(rows), csv_landed["key"], csv_landed["size"]
    )
    return rows


load = wf.sql(
    "load",
    """INSERT INTO sales_csv (day, region, amount_eur)
       SELECT $1::date, r.region, r.amount_eur
       FROM jsonb_to_recordset($2::jsonb) AS r(region text, amount_eur numeric)
       ON CONFLICT (day, region) DO UPDATE SET amount_eur = excluded.amount_eur""",
    args=["${params.date}", "${upstream.read_csv}"],
    after=[prepare, read_csv],
    transactional=True,
    produces=["warehouse.sales_csv"],
)
