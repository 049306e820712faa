"""`generator` with `include_augmented=True`, materialized for real over an augmented_images table that holds both
plain augmented rows and mixup / cutmix blends: the blends are left out and counted, everything else is trained on."""

import json

import dagster as dg
import numpy as np
import pytest

from assets.generator import generator
from conftest import query
from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
from dagster_project.jobs import daily_ingest_job
from synthdata.io.arrays import load_arrays
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths
from synthdata.training.checkpoint import fingerprint
from synthdata.training.loop import TrainConfig
from synthdata.training.tensors import to_nchw

DATE = "2024-01-01"
# Plain flips and both mixing ops, so the table holds both kinds of row (each row is one copy of a train image).
POLICY = "ops:\n- {op: hflip, p: 0.5}\n- {op: mixup, p: 0.3, alpha: 0.4}\n- {op: cutmix, p: 0.3, alpha: 1.0}\n"
# Written out here rather than read from the augmentation registry, so the test does not share the code it checks.
MIXING = ("mixup", "cutmix")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits, one_torch_thread):
    """300 digits ingested, split and augmented by the real daily job, then `generator` (gan) for 20 steps."""
    home = tmp_path_factory.mktemp("home")
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    images, labels, names = digits
    export_as_drops(images[:300], labels[:300], names, paths.landing, [DATE], seed=0)
    resources = build_resources(paths)
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job], resources=resources)
    instance = dg.DagsterInstance.ephemeral()
    ingest = defs.resolve_job_def("daily_ingest_job").execute_in_process(
        instance=instance, partition_key=DATE,
        run_config={"ops": {"augmented_images": {"config": {"policy_yaml": POLICY}}}},
    )  # fmt: skip
    assert ingest.success
    run = dg.materialize(
        [generator], instance=instance, partition_key="gan", resources=resources,
        run_config={"ops": {"generator": {"config": {
            "include_augmented": True, "max_seconds": None, "max_steps": 20, "checkpoint_every": 0}}}},
    )  # fmt: skip
    return paths, resources, instance, run


def test_mixing_rows_are_left_out_and_counted_and_the_other_augmented_rows_are_trained_on(trained):
    paths, resources, instance, run = trained
    assert run.success
    aug = query(paths, "SELECT aug_id, label, ops, blob_key FROM augmented_images WHERE label IS NOT NULL "
                       "ORDER BY aug_id")
    mixed = [any(op["op"] in MIXING for op in json.loads(ops)) for _, _, ops, _ in aug]
    plain = [row for row, m in zip(aug, mixed) if not m]
    train = query(paths, """SELECT s.label, i.blob_key FROM splits s JOIN images i USING (image_id)
                            WHERE s.split = 'train' AND s.label IS NOT NULL ORDER BY s.image_id""")
    assert 0 < sum(mixed) < len(aug), "the table holds both plain augmented rows and mixing rows"

    meta = run.asset_materializations_for_node("generator")[0].metadata
    assert meta["mixing_rows_left_out"].value == sum(mixed)
    assert meta["train_images"].value == len(train) + len(plain)

    # What the training loop itself saw: its start line counts the rows it samples batches from...
    logs = [e.user_message for e in instance.all_logs(run.run_id) if "[gan] training (" in (e.user_message or "")]
    assert len(logs) == 1 and f" x {len(train) + len(plain)} images" in logs[0], logs

    # ...and its checkpoint's fingerprint covers the exact pixels and labels: train rows, then the plain augmented
    # rows, rebuilt here from the warehouse and the store without the asset's code.
    (path, mode, width, height, class_names), = query(
        paths, "SELECT path, image_mode, image_width, image_height, class_names FROM generator_checkpoints")
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    classes = json.loads(class_names)
    store = resources["image_store"].store()
    keys = [k for _, k in train] + [row[3] for row in plain]
    x = load_arrays(store, keys, mode, (width, height))
    y = np.array([classes.index(label) for label, _ in train] + [classes.index(row[1]) for row in plain])
    trajectory = TrainConfig.model_validate(ckpt["config"]).trajectory_dict()
    assert ckpt["fingerprint"] == fingerprint(trajectory, to_nchw(x), y, len(classes), 1)
    assert ckpt["step"] == 20
