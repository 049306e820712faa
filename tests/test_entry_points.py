"""Entry points on a fresh home that the other tests do not start: a tick of the daily schedule, and plain
`dagster dev` from the repo root (the code location from `[tool.dagster]` in pyproject.toml)."""

import datetime
import os

import dagster as dg
import duckdb

from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

DAY = "2024-03-01"


def test_a_schedule_tick_on_a_fresh_home_ingests_the_day_that_just_ended(tmp_path, digits):
    from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
    from dagster_project.jobs import daily_ingest_job
    from dagster_project.schedules import daily_drop_schedule

    images, labels, names = digits
    landing = tmp_path / "drops"
    export_as_drops(images[:40], labels[:40], names, landing, [DAY], seed=0)
    paths = SynthdataPaths(home=tmp_path / "new" / "home", landing=landing)  # neither the home nor its parent exists
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job],
                          schedules=[daily_drop_schedule], resources=build_resources(paths))  # fmt: skip
    tick_time = datetime.datetime(2024, 3, 2, 1, 0, tzinfo=datetime.timezone.utc)
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick_time) as context:
            requests = daily_drop_schedule.evaluate_tick(context).run_requests
        assert [r.partition_key for r in requests] == [DAY]
        result = defs.resolve_job_def("daily_ingest_job").execute_in_process(
            instance=instance, partition_key=requests[0].partition_key, tags=requests[0].tags
        )
        assert result.success
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM raw_images WHERE partition_date = ?", [DAY]).fetchone() == (40,)
    finally:
        con.close()


def test_plain_dagster_dev_from_the_repo_root_serves_the_code_location_over_a_fresh_home(tmp_path):
    from _webserver import graphql, serving, venv_command

    home, dagster_home = tmp_path / "new" / "home", tmp_path / "instance"
    dagster_home.mkdir()  # Dagster itself requires DAGSTER_HOME to exist; the home below it does not
    env = {**os.environ, "SYNTHDATA_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "GX_ANALYTICS_ENABLED": "false"}
    with serving([venv_command("dagster"), "dev"], env, tmp_path / "dev.log") as base:
        body = graphql(base, "{ assetNodes { assetKey { path } } }")
    assert "errors" not in body, body
    keys = {"/".join(n["assetKey"]["path"]) for n in body["data"]["assetNodes"]}
    assert {"raw_images", "images", "splits", "generator", "training_set"} <= keys
