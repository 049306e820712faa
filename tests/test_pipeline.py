"""Real materializations of the whole graph: ephemeral instance, temporary SYNTHDATA_HOME, a digits subset."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import numpy as np
import pytest

from conftest import query
from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
from dagster_project.jobs import daily_ingest_job, synthesis_job
from dagster_project.sensors import quality_alerts
from resources import AlertingResource, QualityResource
from synthdata.dedup.partner_cap import CAP_CHOICES, PROBE_KINDS, SHIFT_CAP_CHOICES
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

DATES = ["2024-01-01", "2024-01-02"]
FAST_TRAINING = {"ops": {"generator": {"config": {"max_seconds": None, "max_steps": 400}},
                         "synthetic_images": {"config": {"per_class": 40}},
                         "feature_extractor": {"config": {"max_seconds": 20.0, "max_epochs": 10}},
                         "quality_report": {"config": {"seeds": [0, 1], "fractions": [0.25, 1.0]}}}}  # fmt: skip
EVALUATE_ONLY = {"ops": {"quality_report": FAST_TRAINING["ops"]["quality_report"]}}

pytestmark = pytest.mark.slow


def make_defs(paths, **overrides):
    resources = {**build_resources(paths), **overrides}
    return dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job, synthesis_job], resources=resources)


def check_results(result):
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in (ev.event_specific_data for ev in result.all_events if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, digits):
    """Two daily drops of 700 digits with planted copies and broken files, ingested and synthesised once."""
    home = tmp_path_factory.mktemp("home")
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    images, labels, names = digits
    manifest = export_as_drops(images[:700], labels[:700], names, paths.landing, DATES, seed=0,
                               exact_copies=6, reencoded_copies=5, corrupt_files=4)  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    defs = make_defs(paths)
    ingest_runs = [
        defs.resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key=d) for d in DATES
    ]
    synth = defs.resolve_job_def("synthesis_job").execute_in_process(
        instance=instance, partition_key="gan", run_config=FAST_TRAINING, raise_on_error=False
    )
    return paths, manifest, instance, defs, ingest_runs, synth


def test_ingest_accepts_images_and_rejects_broken_files_with_reasons(pipeline):
    paths, manifest, *_ = pipeline
    rows = query(paths, "SELECT partition_date::VARCHAR, count(*) FROM raw_images GROUP BY 1 ORDER BY 1")
    expected = {d: len([f for f in manifest.files[d] if f not in manifest.corrupt]) for d in DATES}
    assert dict(rows) == expected
    rejected = dict(query(paths, "SELECT source_path, reason FROM rejected_images"))
    assert set(rejected) == set(manifest.corrupt)
    kinds = {manifest.corrupt[p]: reason for p, reason in rejected.items()}
    assert kinds["zero-byte file"] == "empty file (0 bytes)"
    assert kinds["truncated PNG"].startswith("truncated or corrupt PNG")
    assert kinds["not an image (text with a .png name)"].startswith("not an image")


def test_images_are_deduplicated_across_drops_first_seen_wins(pipeline):
    paths, manifest, *_ = pipeline
    assert query(paths, "SELECT count(*), count(DISTINCT image_id) FROM images")[0] == (700, 700)
    exact = query(paths, "SELECT member_source FROM duplicate_groups WHERE kind = 'exact'")
    copies = {c for _, c in manifest.exact_copies + manifest.reencoded_copies}
    assert {m for (m,) in exact} == copies
    sources = {s for (s,) in query(paths, "SELECT source_path FROM images")}
    assert not sources & copies  # the originals (earlier drop) were kept


def test_the_images_materialization_says_what_the_partner_caps_left_out(pipeline):
    *_, ingest_runs, _ = pipeline
    shown = [
        e.step_materialization_data.materialization.metadata
        for run in ingest_runs for e in run.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key == dg.AssetKey("images")
    ]  # fmt: skip
    assert shown
    for meta in shown:
        capped = meta["near_capped_images_phash"].value, meta["near_capped_images_shift"].value
        assert all(0 <= c <= meta["new_images_compared"].value for c in capped)  # (counted exactly: test_dedup_shift_hash)
        # The pHash cap each run chose, and the planted copies it was chosen on (test_partner_cap)...
        assert meta["near_max_partners"].value in CAP_CHOICES
        assert f"{meta['near_max_partners'].value} pHash partners per new image" in meta["near_partner_cap"].value
        # ...and the shift channel's, chosen after it on the same copies.
        assert meta["near_shift_max_partners"].value in SHIFT_CAP_CHOICES
        assert f"{meta['near_shift_max_partners'].value} shift-channel partners" in meta["near_partner_cap"].value
        for key in ("near_partner_cap_by_transform", "near_shift_cap_by_transform"):
            shares = meta[key].value
            assert set(shares) <= set(PROBE_KINDS) and all(0 <= v <= 1 for s in shares.values() for v in s.values())


def test_splits_cover_every_image_once_and_checks_pass(pipeline):
    paths, _, _, _, ingest_runs, _ = pipeline
    per_split = dict(query(paths, "SELECT split, count(*) FROM splits GROUP BY 1"))
    assert sum(per_split.values()) == 700 and min(per_split.values()) > 40
    for run in ingest_runs:
        assert run.success
        results = check_results(run)
        assert results and all(results.values()), results
        assert ("splits", "splits_no_leak") in results


def test_rematerializing_a_partition_replaces_it(pipeline):
    paths, _, instance, defs, _, _ = pipeline
    before = query(paths, "SELECT count(*) FROM raw_images WHERE partition_date = ?", [DATES[0]])
    result = defs.resolve_job_def("daily_ingest_job").execute_in_process(
        instance=instance, partition_key=DATES[0], asset_selection=[dg.AssetKey("raw_images")]
    )
    assert result.success
    assert query(paths, "SELECT count(*) FROM raw_images WHERE partition_date = ?", [DATES[0]]) == before
    assert query(paths, "SELECT count(*) FROM (SELECT partition_date, source_path FROM raw_images GROUP BY ALL HAVING count(*) > 1)") == [(0,)]


def test_augmented_rows_record_parent_and_ops(pipeline):
    paths, *_ = pipeline
    n_train = query(paths, "SELECT count(*) FROM splits WHERE split = 'train'")[0][0]
    rows = query(paths, "SELECT parent_id, ops FROM augmented_images")
    assert len(rows) == n_train
    assert {p for p, _ in rows} == {i for (i,) in query(paths, "SELECT image_id FROM splits WHERE split = 'train'")}
    assert any(json.loads(ops) for _, ops in rows)


def test_synthesis_trains_samples_and_evaluates(pipeline):
    paths, _, _, _, _, synth = pipeline
    mat = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in synth.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }  # fmt: skip
    assert {"generator", "synthetic_images", "feature_extractor", "quality_report"} <= set(mat)
    gen = mat["generator"]
    assert gen["steps"].value == 400 and gen["samples"].value.startswith("![")
    ckpt = query(paths, "SELECT path, family FROM generator_checkpoints")
    assert len(ckpt) == 1 and ckpt[0][1] == "gan" and ckpt[0][0].startswith(str(paths.checkpoints))
    synthetic = dict(query(paths, "SELECT label, count(*) FROM synthetic_images GROUP BY 1"))
    assert len(synthetic) == 10 and set(synthetic.values()) == {40}
    metrics = dict(query(paths, "SELECT metric, value FROM quality_metrics WHERE family = 'gan' AND class_label IS NULL"))
    assert metrics["trtr_accuracy"] > 0.85
    assert 0.0 < metrics["tstr_accuracy"] <= 1.0
    report = mat["quality_report"]["report"].value
    assert "TSTR" in open(report).read()
    gate = check_results(synth)[("quality_report", "quality_gate")]
    assert [gate] == [p for (p,) in query(paths, "SELECT passed FROM evaluations WHERE family = 'gan'")]
    exported = query(paths, "SELECT 1") and (paths.exports / "gan" / "training_set.parquet").exists()
    assert exported == gate  # publishing happens exactly when the gate passes


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_quality_gate_skips_publishing_and_alerts_the_webhook(pipeline):
    paths, _, instance, _, _, _ = pipeline
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        strict = make_defs(paths, quality=QualityResource(min_tstr_trtr_ratio=1.01))
        result = strict.resolve_job_def("synthesis_job").execute_in_process(
            instance=instance, partition_key="gan", raise_on_error=False, run_config=EVALUATE_ONLY,
            asset_selection=[dg.AssetKey("quality_report"), dg.AssetKey("training_set")],
        )  # fmt: skip
        assert not result.success
        assert check_results(result)[("quality_report", "quality_gate")] is False
        materialized = {e.asset_key.to_user_string() for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
        assert materialized == {"quality_report"}  # training_set was not published

        resources = {**build_resources(paths), "alerting": AlertingResource(webhook_url=url)}
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            quality_alerts(ctx)
            cursor = ctx.cursor
        # One open alert per failure key: an earlier failing run of the same check / job counts against it.
        keys = ["check:quality_report:quality_gate%", "run:synthesis_job:gan"]
        alerts = query(paths, "SELECT kind, check_name, delivered, occurrences FROM alerts WHERE (dedup_key LIKE ? OR dedup_key = ?) AND resolved_at IS NULL", keys)
        assert {(k, c) for k, c, _, _ in alerts} == {("check_failed", "quality_gate"), ("run_failed", None)}
        assert all("HTTP 200" in d for _, _, d, _ in alerts)
        assert any(p["check_name"] == "quality_gate" and "tstr_trtr_ratio" in p["text"] for p in _Hook.received)
        # a second tick with the cursor records nothing twice
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            quality_alerts(ctx)
        again = query(paths, "SELECT kind, check_name, delivered, occurrences FROM alerts WHERE (dedup_key LIKE ? OR dedup_key = ?) AND resolved_at IS NULL", keys)
        assert sorted(again) == sorted(alerts)
    finally:
        server.shutdown()


def test_definitions_load_with_jobs_schedule_and_sensors():
    from dagster_project.definitions import defs

    repo = defs.get_repository_def()
    assert {"daily_ingest_job", "synthesis_job"} <= {j.name for j in repo.get_all_jobs()}
    assert [s.name for s in repo.schedule_defs] == ["daily_drop_schedule"]
    assert {s.name for s in repo.sensor_defs} == {"retrain_on_new_data", "quality_alerts", "synthdata_automation"}
    assert np.all([a.key.to_user_string() for a in ALL_ASSETS])
