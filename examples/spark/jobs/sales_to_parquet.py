"""A PySpark job: one day's orders from a CSV file into Parquet, partitioned by date.

    spark-submit sales_to_parquet.py --input orders.csv --output sales_parquet --date 2026-11-19

It overwrites only its own date's partition (``<output>/date=<date>/``: dynamic partition
overwrite), so running a date again replaces that day's rows and duplicates nothing. When
durable runs it, the result (rows written, the partition's path) goes to the file named by
``$DURABLE_RESULT``, which becomes the task's output.
"""

from __future__ import annotations

import argparse
import json
import os

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True, help="the orders CSV file")
    parser.add_argument("--output", required=True, help="the Parquet dataset's folder")
    parser.add_argument("--date", required=True, help="the day to load, YYYY-MM-DD")
    args = parser.parse_args()

    spark = SparkSession.builder.appName(f"sales_to_parquet {args.date}").getOrCreate()
    # overwrite replaces only the partitions written, not the whole dataset
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    orders = (
        spark.read.option("header", True)
        .schema("order_id LONG, day STRING, region STRING, amount_eur DOUBLE")
        .csv(args.input)
        .where(F.col("day") == args.date)
        .select("order_id", "region", "amount_eur", F.col("day").alias("date"))
    )
    rows = orders.count()
    orders.write.mode("overwrite").partitionBy("date").parquet(args.output)
    path = os.path.join(os.path.abspath(args.output), f"date={args.date}")
    print(f"wrote {rows} orders of {args.date} to {path}", flush=True)
    if os.environ.get("DURABLE_RESULT"):
        with open(os.environ["DURABLE_RESULT"], "w") as f:
            json.dump({"date": args.date, "rows": rows, "path": path}, f)
    spark.stop()


if __name__ == "__main__":
    main()
