import dagster as dg

from dagster_project.jobs import daily_ingest_job

# Each day at 01:00 UTC, ingest the drop of the day that just ended (the partition's own date).
daily_drop_schedule = dg.build_schedule_from_partitioned_job(
    daily_ingest_job,
    hour_of_day=1,
    minute_of_hour=0,
    name="daily_drop_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
