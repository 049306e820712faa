"""The quality gate holds across runs: `training_set` obeys the stored verdict of the family's latest evaluation
however it is started. Real materializations on an ephemeral instance, a temporary SYNTHDATA_HOME and 500 digits
(plus unlabeled ones), a real small GAN, feature extractor and evaluation."""

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from conftest import png, query
from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
from dagster_project.jobs import daily_ingest_job, synthesis_job
from resources import QualityResource
from synthdata.io.atomic import write_atomic
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

DATE = "2024-01-01"
N_UNLABELED = 12
EVALUATE = {"seeds": [0, 1], "fractions": [0.25, 1.0]}
FAST = {"ops": {"generator": {"config": {"max_seconds": None, "max_steps": 120}},
                "synthetic_images": {"config": {"per_class": 30}},
                "feature_extractor": {"config": {"max_seconds": 20.0, "max_epochs": 10}},
                "quality_report": {"config": EVALUATE}}}  # fmt: skip
# Impossible to meet: TSTR would have to beat TRTR.
STRICT = "all: {tstr_trtr_ratio: {min: 1.01}}"


def loose_floors() -> str:
    """Every default floor removed but one any evaluation meets: a pass that does not depend on the GAN's luck."""
    from synthdata.evaluate.gate import default_floors

    return json.dumps({"all": {**{f.metric: None for f in default_floors("gan")}, "tstr_trtr_ratio": {"min": 0.0}}})


slow = pytest.mark.slow


def make_defs(paths, floors_yaml: str = ""):
    resources = {**build_resources(paths), "quality": QualityResource(floors_yaml=floors_yaml)}
    return dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job, synthesis_job], resources=resources)


def materialize(env, keys, floors_yaml="", run_config=None):
    paths, instance = env
    return make_defs(paths, floors_yaml).resolve_job_def("synthesis_job").execute_in_process(
        instance=instance, partition_key="gan", asset_selection=[dg.AssetKey(k) for k in keys],
        run_config=run_config or {"ops": {"quality_report": {"config": EVALUATE}}}, raise_on_error=False,
    )  # fmt: skip


def step_error(result, step: str) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE and e.step_key == step]
    assert failures, f"{step} did not fail"
    return failures[0].event_specific_data.error.message


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}


def export_files(paths) -> dict[str, tuple[bytes, int]]:
    folder = Path(paths.exports) / "gan"
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())} if folder.exists() else {}


def ingested_and_synthesized(paths, digits, instance: dg.DagsterInstance, unlabeled: int = 0):
    """One drop of 500 labelled digits (and `unlabeled` without a label) ingested into `paths`, then
    synthesis_job run once for gan with loose floors: its result."""
    images, labels, names = digits
    export_as_drops(images[:500], labels[:500], names, paths.landing, [DATE], seed=0)
    for i in range(unlabeled):  # straight in the drop folder: label NULL
        write_atomic(paths.landing / DATE / f"unlabeled_{i:03d}.png", png(images[600 + i]))
    ingest = make_defs(paths).resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key=DATE)
    assert ingest.success
    first = make_defs(paths, loose_floors()).resolve_job_def("synthesis_job").execute_in_process(
        instance=instance, partition_key="gan", run_config=FAST, raise_on_error=False
    )
    assert first.success, [e.message for e in first.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return first


@pytest.fixture(scope="module")
def env(tmp_path_factory, digits):
    """One drop of 500 labelled digits and 12 unlabeled ones, ingested; synthesis_job run once with loose floors."""
    home = tmp_path_factory.mktemp("home")
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    instance = dg.DagsterInstance.ephemeral()
    return paths, instance, ingested_and_synthesized(paths, digits, instance, N_UNLABELED)


@slow
def test_evaluation_stores_per_class_metrics_and_its_verdict(env):
    paths, _, first = env
    (evaluation_id, passed, failures, floors, report), = query(
        paths, "SELECT evaluation_id, passed, failures, floors_json, report_path FROM evaluations WHERE family = 'gan'"
    )
    assert passed is True and json.loads(failures) == [] and json.loads(floors) == [{"metric": "tstr_trtr_ratio", "min": 0.0, "max": None}]
    assert Path(report).exists()
    classes = {c for (c,) in query(paths, "SELECT DISTINCT label FROM splits WHERE split = 'train' AND label IS NOT NULL")}
    per_class = query(
        paths, """SELECT metric, list(DISTINCT class_label) FROM quality_metrics
                  WHERE evaluation_id = ? AND class_label IS NOT NULL GROUP BY metric""", [evaluation_id]
    )  # fmt: skip
    by_metric = {m: set(c) for m, c in per_class}
    for metric in ("fid", "precision", "recall", "density", "coverage", "tstr_class_accuracy", "dcr_ratio"):
        assert by_metric.get(metric) == classes, metric
    overall = dict(query(paths, "SELECT metric, value FROM quality_metrics WHERE evaluation_id = ? AND class_label IS NULL", [evaluation_id]))
    assert {"tstr_trtr_ratio", "coverage", "recall", "mia_auc", "near_copy_fraction", "fid"} <= set(overall)
    # one row per metric per class per evaluation
    assert query(paths, """SELECT count(*) FROM (SELECT metric, class_label, split FROM quality_metrics
                           WHERE evaluation_id = ? GROUP BY ALL HAVING count(*) > 1)""", [evaluation_id]) == [(0,)]  # fmt: skip
    checks = [e.event_specific_data for e in first.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert [(c.check_name, c.passed) for c in checks if c.asset_key.to_user_string() == "quality_report"] == [("quality_gate", True)]
    meta = next(e.step_materialization_data.materialization.metadata for e in first.all_events
                if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key.to_user_string() == "quality_report")  # fmt: skip
    assert meta["passed"].value is True and meta["evaluation_id"].value == evaluation_id
    assert any(k.startswith("figure_") and v.value.startswith("![") for k, v in meta.items())


@slow
def test_training_set_alone_after_a_failed_gate_publishes_nothing_and_names_the_floors(env):
    paths, instance, _ = env
    evaluated = materialize((paths, instance), ["quality_report"], STRICT)
    assert not evaluated.success  # the blocking check fails the run that evaluated
    (eval_id, passed, failures), = query(
        paths, "SELECT evaluation_id, passed, failures FROM evaluations ORDER BY created_at DESC LIMIT 1"
    )
    assert passed is False and any(f.startswith("tstr_trtr_ratio") for f in json.loads(failures))
    before = export_files(paths)

    # A new run with the default configuration: the stored verdict, not this run's config, decides.
    alone = materialize((paths, instance), ["training_set"])
    assert not alone.success and "training_set" not in materialized(alone)
    message = step_error(alone, "training_set")
    assert "quality gate failed" in message and eval_id in message and re.search(r"tstr_trtr_ratio \(val\) [\d.]+ < min 1\.01", message)
    assert export_files(paths) == before  # nothing written, nothing touched
    if before:  # the export left in place names the evaluation that passed, not the failed one
        assert json.loads(before["manifest.json"][0])["evaluation_id"] != eval_id


@slow
def test_training_set_alone_after_a_pass_publishes_the_evaluated_checkpoint_unlabeled_rows_included(env):
    paths, instance, _ = env
    assert materialize((paths, instance), ["quality_report"], loose_floors()).success
    (eval_id, checkpoint_id), = query(paths, "SELECT evaluation_id, checkpoint_id FROM evaluations ORDER BY created_at DESC LIMIT 1")

    alone = materialize((paths, instance), ["training_set"])
    assert alone.success and materialized(alone) == {"training_set"}
    manifest = json.loads((paths.exports / "gan" / "manifest.json").read_text())
    assert manifest["evaluation_id"] == eval_id and manifest["checkpoint_id"] == checkpoint_id
    assert manifest["metrics"]["tstr_trtr_ratio"] > 0
    import pyarrow.parquet as pq

    table = pq.read_table(paths.exports / "gan" / "training_set.parquet", columns=["label", "label_name", "source"]).to_pydict()
    (unlabeled_train,), = query(paths, "SELECT count(*) FROM splits WHERE split = 'train' AND label IS NULL")
    assert unlabeled_train > 0  # the fixture's unlabeled images reached the train split
    nulls = [i for i, v in enumerate(table["label"]) if v is None]
    assert len(nulls) == unlabeled_train == manifest["unlabeled_rows"]
    assert all(table["label_name"][i] is None and table["source"][i] == "real" for i in nulls)


@slow
def test_a_new_checkpoint_without_an_evaluation_blocks_publishing(env):
    paths, instance, _ = env
    retrain = {"ops": {"generator": {"config": {"max_seconds": None, "max_steps": 40, "seed": 7}},
                       "synthetic_images": {"config": {"per_class": 30}}}}  # fmt: skip
    assert materialize((paths, instance), ["generator", "synthetic_images"], run_config=retrain).success
    (new_checkpoint,), = query(paths, "SELECT DISTINCT checkpoint_id FROM synthetic_images WHERE family = 'gan'")
    assert new_checkpoint not in {c for (c,) in query(paths, "SELECT checkpoint_id FROM evaluations")}
    before = export_files(paths)

    alone = materialize((paths, instance), ["training_set"])
    assert not alone.success
    assert f"no evaluation of checkpoint {new_checkpoint} yet" in step_error(alone, "training_set")
    assert export_files(paths) == before


@slow
def test_resampled_synthetic_rows_need_a_new_evaluation(env):
    paths, instance, _ = env
    assert materialize((paths, instance), ["quality_report"], loose_floors()).success
    resample = {"ops": {"synthetic_images": {"config": {"per_class": 30, "seed": 99}}}}
    assert materialize((paths, instance), ["synthetic_images"], run_config=resample).success

    alone = materialize((paths, instance), ["training_set"])
    assert not alone.success and "changed since evaluation" in step_error(alone, "training_set")


@slow
def test_feature_extractor_is_reused_while_the_train_and_val_rows_are_unchanged(env):
    paths, instance, first = env
    trained = next(e.step_materialization_data.materialization.metadata for e in first.all_events
                   if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key.to_user_string() == "feature_extractor")  # fmt: skip
    assert trained["reused"].value is False and 0.5 < trained["val_accuracy"].value <= 1.0
    again = make_defs(paths).resolve_job_def("synthesis_job").execute_in_process(
        instance=instance, partition_key="gan", asset_selection=[dg.AssetKey("feature_extractor")],
        run_config={"ops": {"feature_extractor": {"config": {"max_seconds": 20.0, "max_epochs": 10}}}},
    )  # fmt: skip
    meta = again.asset_materializations_for_node("feature_extractor")[0].metadata
    assert meta["reused"].value is True and meta["key"].value == trained["key"].value
    assert len(list((paths.checkpoints / "feature_extractor").glob("*.pt"))) == 1


def test_floors_come_from_defaults_then_shorthands_then_the_family_yaml():
    from synthdata.evaluate.gate import default_floors

    defaults = {f.metric: f for f in default_floors("gan")}
    assert {f.metric: f for f in QualityResource().floors_for("gan")} == defaults
    shorthand = {f.metric: f for f in QualityResource(min_tstr_trtr_ratio=0.95, max_copy_fraction=0.01).floors_for("gan")}
    assert shorthand["tstr_trtr_ratio"].min == 0.95 and shorthand["near_copy_fraction"].max == 0.01
    q = QualityResource(min_tstr_trtr_ratio=0.95, floors_yaml="all: {coverage: {min: 0.7}}\ngan: {tstr_trtr_ratio: {min: 0.8}, mia_auc: null}")
    gan, vae = ({f.metric: f for f in q.floors_for(family)} for family in ("gan", "vae"))
    assert gan["tstr_trtr_ratio"].min == 0.8 and vae["tstr_trtr_ratio"].min == 0.95  # the family's entry wins
    assert gan["coverage"].min == vae["coverage"].min == 0.7 and gan["coverage"].max is None
    assert "mia_auc" not in gan and vae["mia_auc"] == defaults["mia_auc"]


@pytest.mark.parametrize("bad", ["gan: {coverage: 0.5}", "gan: {coverage: {above: 0.5}}", "- coverage", "gan: {coverage: {min: yes}}"])
def test_malformed_floors_are_refused_when_the_resource_is_configured(bad):
    with pytest.raises(Exception, match="floors_yaml"):
        QualityResource(floors_yaml=bad)


def test_the_floors_example_in_the_operations_doc_is_valid():
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text.split("## Blocking checks")[1], re.S).group(1)
    floors = {f.metric: f for f in QualityResource(floors_yaml=example).floors_for("diffusion")}
    assert floors["coverage"].min == 0.6 and floors["tstr_trtr_ratio"].min == 0.95 and "mia_auc" not in floors
