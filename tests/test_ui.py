"""`make ui` serves the same instance: the webserver shows the graph, the partitions and the check results. The
webserver comes from conftest (`webserver_over_one_ingested_day`)."""

import pytest

from _webserver import graphql

pytestmark = pytest.mark.slow

QUERY = """
{
  assetNodes { assetKey { path } }
  raw: assetOrError(assetKey: {path: ["raw_images"]}) {
    ... on Asset {
      assetMaterializations(limit: 10) { partition runId }
      definition { partitionKeysByDimension { name } }
    }
  }
  checks: assetNodeOrError(assetKey: {path: ["splits"]}) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } }
    }
  }
}
"""


def test_webserver_shows_what_the_pipeline_materialized(webserver_over_one_ingested_day):
    served = webserver_over_one_ingested_day
    data = graphql(served.url, QUERY)["data"]
    keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    assert {"raw_images", "images", "splits", "augmented_images", "generator", "synthetic_images",
            "quality_report", "training_set"} <= keys  # fmt: skip
    mats = data["raw"]["assetMaterializations"]
    assert [(m["partition"], m["runId"]) for m in mats] == [(served.day, served.run_id)]
    checks = {c["name"]: c["executionForLatestMaterialization"]["status"]
              for c in data["checks"]["assetChecksOrError"]["checks"]}  # fmt: skip
    assert checks == {"splits_no_leak": "SUCCEEDED", "splits_leakage_audit": "SUCCEEDED"}
