"""Checkpoints as files: published under their content hash, self-describing through model_args, and the
checkpoints written before model_args existed still load and sample the same images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthdata.datasets import load_digits_uint8
from synthdata.models import build_model
from synthdata.training.checkpoint import (
    atomic_save,
    checkpoint_model_args,
    load_checkpoint,
    publish_checkpoint,
    state_digest,
)
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.sample import load_generator


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory) -> Path:
    """A finished 3-step diffusion run on 200 digits (the family whose model has a non-persistent buffer)."""
    images, labels, _ = load_digits_uint8()
    cfg = TrainConfig.model_validate(
        {"family": "diffusion", "max_steps": 3, "max_seconds": None, "batch_size": 16, "checkpoint_every": 0,
         "sample_every": 0, "log_every": 1, "grid_per_class": 1, "diffusion": {"sampling_steps": 3, "width": 8}}
    )
    return train_generator(images[:200], labels[:200], 10, cfg, "cpu", tmp_path_factory.mktemp("run")).checkpoint_path


def test_publish_names_the_file_by_its_bytes_and_never_rewrites_it(tmp_path):
    source = tmp_path / "run" / "checkpoint.pt"
    source.parent.mkdir()
    atomic_save({"step": 7, "w": torch.arange(5)}, source)
    dest = tmp_path / "published"

    checkpoint_id, path = publish_checkpoint(source, dest)
    assert checkpoint_id == hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    assert path == dest / f"{checkpoint_id}.pt" and path.read_bytes() == source.read_bytes()
    mtime = path.stat().st_mtime_ns

    assert publish_checkpoint(source, dest) == (checkpoint_id, path)
    assert path.stat().st_mtime_ns == mtime, "an already published checkpoint is not written again"
    assert sorted(p.name for p in dest.iterdir()) == [path.name], "no temporary files are left behind"

    atomic_save({"step": 8, "w": torch.arange(5)}, source)  # the run folder's file moves on; the published one stays
    other_id, other_path = publish_checkpoint(source, dest)
    assert other_id != checkpoint_id and other_path != path and load_checkpoint(path)["step"] == 7


def test_model_args_are_plain_data_that_rebuild_the_network(diffusion_run):
    ckpt = load_checkpoint(diffusion_run)  # weights_only=True
    args = ckpt["model_args"]
    assert args == json.loads(json.dumps(args))
    assert (args["family"], args["shape"], args["num_classes"]) == ("diffusion", [1, 8, 8], 10)
    assert args["config"]["width"] == 8 and args["config"]["sampling_steps"] == 3
    model = build_model(args)
    model.load_state_dict(ckpt["model"])
    assert state_digest(model.state_dict()) == state_digest(ckpt["model"])


def test_checkpoints_without_model_args_load_and_sample_the_same(diffusion_run, tmp_path):
    ckpt = load_checkpoint(diffusion_run)
    legacy = tmp_path / "legacy.pt"
    atomic_save({k: v for k, v in ckpt.items() if k != "model_args"}, legacy)
    assert checkpoint_model_args(load_checkpoint(legacy)) == ckpt["model_args"]

    new, old = load_generator(diffusion_run), load_generator(legacy)
    assert (old.family, old.num_classes, old.shape, old.config) == (new.family, new.num_classes, new.shape, new.config)
    y = np.arange(10)
    assert np.array_equal(old.sample(y, seed=5), new.sample(y, seed=5))



def test_format_1_diffusion_checkpoints_keep_plain_epsilon_prediction(diffusion_run, tmp_path):
    """Format-1 checkpoints predate `precondition` (and were trained without it): they rebuild as "eps", while
    current ones say what they were trained with."""
    ckpt = load_checkpoint(diffusion_run)
    assert ckpt["format"] == 2 and ckpt["model_args"]["config"]["precondition"] == "edm"
    old_config = {k: v for k, v in ckpt["model_args"]["config"].items() if k not in ("precondition", "sigma_data")}
    legacy = tmp_path / "format1.pt"
    atomic_save({**ckpt, "format": 1, "model_args": {**ckpt["model_args"], "config": old_config}}, legacy)
    assert checkpoint_model_args(load_checkpoint(legacy))["config"]["precondition"] == "eps"
    assert load_generator(legacy).config.precondition == "eps"
