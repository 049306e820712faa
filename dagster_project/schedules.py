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

# What follows a new drop is declarative: each curated asset materializes once its parents changed (a drop
# ingested from the schedule, a backfill, the CLI or the UI), never while a parent is still being written.
FOLLOWS_A_DROP = ["images", "label_issues", "image_issues", "splits", "augmented_images"]
# `eager()` also waits until no parent is missing. raw_images has a partition per calendar day since
# 2024-01-01 and some are always missing (days without a drop), so only raw_images is left out of that test.
FOLLOW_NEW_DATA = dg.AutomationCondition.eager().replace(
    "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("raw_images"))
)


def with_automation(assets: list) -> list:
    """The asset definitions with FOLLOW_NEW_DATA on every asset of FOLLOWS_A_DROP."""
    keys = {dg.AssetKey(k) for k in FOLLOWS_A_DROP}
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=FOLLOW_NEW_DATA) if spec.key in keys else spec,
        assets,
    )


# Evaluates every automation condition (the curated assets above, the hourly freshness check) every 30 s.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "synthdata_automation",
    target=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
