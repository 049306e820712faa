"""Freshness of the daily drops: the day's drop must be ingested, and not empty, by a configurable hour."""

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb

from resources import WarehouseResource
from synthdata.io.warehouse import ensure_schema

DEADLINE_HOUR_ENV = "SYNTHDATA_DROP_DEADLINE_HOUR"  # UTC hour of day D+1 by which day D's drop is ingested (3)
MIN_IMAGES_ENV = "SYNTHDATA_DROP_MIN_IMAGES"  # fewer accepted images than this is an empty drop (1)


def deadline_hour() -> int:
    return int(os.environ.get(DEADLINE_HOUR_ENV, "3"))


def expected_drop(now: dt.datetime, hour: int) -> dt.date:
    """The latest drop that must be in by `now`: yesterday's once today's deadline hour has passed."""
    return (now - dt.timedelta(hours=hour)).date() - dt.timedelta(days=1)


def drop_freshness(con, day: dt.date, deadline: str | None, min_images: int) -> dg.AssetCheckResult:
    """Is `day`'s drop ingested (by `deadline`, when one applies) with at least `min_images` accepted images?"""
    row = con.execute(
        """SELECT p.committed_at, (SELECT count(*) FROM raw_images r WHERE r.partition_date = p.partition_date),
                  (SELECT count(*) FROM rejected_images r WHERE r.partition_date = p.partition_date)
           FROM raw_partitions p WHERE p.partition_date = ?""",
        [day],
    ).fetchone()
    last = con.execute("SELECT max(partition_date)::VARCHAR FROM raw_partitions").fetchone()[0]
    if row is None:
        problem = f"late: the {day} drop was not ingested by {deadline} (latest ingested drop: {last or 'none'})"
    elif row[1] < min_images:
        problem = f"empty: the {day} drop has {row[1]} accepted image(s) ({row[2]} rejected), fewer than {min_images}"
    else:
        problem = ""
    return dg.AssetCheckResult(
        passed=not problem,
        severity=dg.AssetCheckSeverity.WARN,
        description=problem or f"the {day} drop is in: {row[1]} images, ingested {row[0]:%Y-%m-%d %H:%M} UTC",
        metadata={
            "expected_drop": str(day),
            "deadline": deadline or "",
            "latest_ingested_drop": last or "",
            "accepted": int(row[1]) if row else 0,
            "rejected": int(row[2]) if row else 0,
        },
    )


@dg.asset_check(
    asset="raw_images",
    description="Freshness: the drop of day D is ingested with at least SYNTHDATA_DROP_MIN_IMAGES accepted images "
    "by SYNTHDATA_DROP_DEADLINE_HOUR (UTC, default 03:00) on D+1. Evaluated hourly by the automation sensor "
    "(the latest drop due: late or empty fails), and in each ingest run for that run's day (empty fails). "
    "WARN, so `quality_alerts` alerts; it passes again, and the alert resolves, once the drop is in.",
    # Hourly, whether or not raw_images changed: a late drop is precisely one that did not change it.
    automation_condition=dg.AutomationCondition.cron_tick_passed("5 * * * *") & ~dg.AutomationCondition.in_progress(),
)
def raw_images_freshness(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    min_images = int(os.environ.get(MIN_IMAGES_ENV, "1"))
    if context.has_partition_key:  # an ingest run (schedule, backfill, CLI): judge the day it ingested
        day, deadline = dt.date.fromisoformat(context.partition_key), None
    else:
        hour = deadline_hour()
        day = expected_drop(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), hour)
        deadline = f"{day + dt.timedelta(days=1)} {hour:02d}:00 UTC"
    if not Path(warehouse.database).exists():  # a fresh home: nothing was ever ingested
        with duckdb.connect() as empty:
            ensure_schema(empty)
            return drop_freshness(empty, day, deadline, min_images)
    with warehouse.read() as con:
        return drop_freshness(con, day, deadline, min_images)
