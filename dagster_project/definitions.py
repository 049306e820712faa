"""The one Definitions object of the synthdata code location."""


import os

import dagster as dg

import assets.augment
import assets.curate
import assets.evaluate
import assets.export
import assets.features
import assets.freshness
import assets.flags
import assets.generator
import assets.ingest
import assets.splits
import assets.synthesize
from dagster_project.jobs import daily_ingest_job, synthesis_job
from dagster_project.schedules import automation_sensor, daily_drop_schedule, with_automation
from dagster_project.sensors import quality_alerts, retrain_on_new_data
from resources import AlertingResource, ImageStoreResource, QualityResource, TorchDevice, WarehouseResource
from synthdata.io.paths import SynthdataPaths

ASSET_MODULES = [
    assets.ingest, assets.curate, assets.flags, assets.splits, assets.augment,
    assets.generator, assets.synthesize, assets.features, assets.evaluate, assets.export,
]  # fmt: skip
ALL_ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
ALL_CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)


def build_resources(paths: SynthdataPaths | None = None) -> dict[str, object]:
    """Resources for a SYNTHDATA_HOME (from the environment unless given)."""
    paths = paths or SynthdataPaths.from_env()
    return {
        "warehouse": WarehouseResource(database=str(paths.warehouse)),
        "image_store": ImageStoreResource(home=str(paths.home), landing=str(paths.landing)),
        "torch_device": TorchDevice(device=os.environ.get("SYNTHDATA_DEVICE", "auto")),
        "alerting": AlertingResource.from_env(),
        "quality": QualityResource(),
    }


# Outside ALL_CHECKS (what tests materialize with): evaluated hourly, it judges the latest drop due by the clock.
FRESHNESS_CHECKS = dg.load_asset_checks_from_modules([assets.freshness])

defs = dg.Definitions(
    assets=with_automation(ALL_ASSETS),
    asset_checks=[*ALL_CHECKS, *FRESHNESS_CHECKS],
    jobs=[daily_ingest_job, synthesis_job],
    schedules=[daily_drop_schedule],
    sensors=[retrain_on_new_data, quality_alerts, automation_sensor],
    resources=build_resources(),
    # One process per run, not per step: nearly every step is in the `duckdb` pool (one at a time anyway), and
    # a step process re-imports the code location (seconds each), which made a 30-day backfill crawl.
    executor=dg.in_process_executor,
)
