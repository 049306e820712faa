"""Compute-aware defaults (synthdata/training/plan.py) on real warm-ups: real Fashion-MNIST / digits images, real
timed training steps on this machine's CPU, and the runs that follow them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthdata.datasets import load_digits_uint8, load_fashion_mnist
from synthdata.training.checkpoint import atomic_save, load_checkpoint
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.plan import CPU_NOTES, TARGET_STEPS, ladder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fashion():
    try:
        images, labels, _ = load_fashion_mnist(split="test")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return images[:300], labels[:300]


def timed(family: str, seconds: float, **kw) -> TrainConfig:
    return TrainConfig.model_validate(
        {"family": family, "max_seconds": seconds, "checkpoint_every": 0, "sample_every": 0, "log_every": 10,
         "grid_per_class": 1, "plan": {"warmup_seconds": 3.0, "timed_steps": 2}, **kw}
    )


def test_a_time_budget_on_cpu_plans_a_model_that_fits_it_and_records_why(fashion, tmp_path):
    """The library defaults (conv, width 64, batch 128) are far too slow for 10 s on a CPU at 28x28: the warm-up
    measures candidates smallest first and keeps the last one that reaches the target; model_args, the checkpoint
    and the log all carry the choice."""
    images, labels = fashion
    lines: list[str] = []
    result = train_generator(images, labels, 10, timed("vae", 10.0), "cpu", tmp_path, log=lines.append)
    plan = result.plan
    assert plan["source"] == "planned" and plan["target_steps"] == TARGET_STEPS["vae"] and not plan["reused"]
    assert (plan["arch"], plan["width"]) != ("conv", 64), "the reference size cannot take 1,000 steps in 10 s here"
    assert plan["measured"] and all("candidate" in m for m in plan["measured"])
    labels_measured = [m["candidate"] for m in plan["measured"]]
    assert labels_measured == [c.label for c in ladder((1, 28, 28))][: len(labels_measured)], "smallest first"
    chosen = f"{plan['arch']}-w{plan['width']}-b{plan['batch_size']}"
    assert chosen in labels_measured and plan["steps_per_second"] > 0 and plan["predicted_steps"] > 0
    assert 0 < plan["warmup_seconds"] < 3.0 + 15.0  # the cap stops new candidates; one in flight may finish
    assert any("plan (planned)" in line and plan["reason"] in line for line in lines)

    ckpt = load_checkpoint(result.checkpoint_path)
    assert ckpt["plan"] == plan
    assert ckpt["model_args"]["config"]["width"] == plan["width"] and ckpt["model_args"]["config"]["arch"] == plan["arch"]
    assert ckpt["config"]["batch_size"] == plan["batch_size"] == result.config.batch_size
    # The budget covers the warm-up: training stopped by then, give or take a step.
    assert plan["warmup_seconds"] + result.seconds < 10.0 + 2.0


def test_explicit_hyperparameters_win_over_the_plan(fashion, tmp_path):
    images, labels = fashion
    cfg = timed("gan", 3.0, batch_size=16, gan={"arch": "conv", "width": 8})
    result = train_generator(images, labels, 10, cfg, "cpu", tmp_path / "all")
    assert result.plan["source"] == "overridden" and result.plan["measured"] == []
    assert result.plan["overridden"] == ["batch_size", "gan.arch", "gan.width"]
    args = load_checkpoint(result.checkpoint_path)["model_args"]["config"]
    assert (args["arch"], args["width"], result.config.batch_size) == ("conv", 8, 16)

    # Only the batch size set: the warm-up still chooses arch and width, every candidate at that batch size.
    part = train_generator(images, labels, 10, timed("vae", 8.0, batch_size=24), "cpu", tmp_path / "part")
    assert part.plan["source"] == "planned" and part.plan["overridden"] == ["batch_size"]
    assert all(m["candidate"].endswith("-b24") for m in part.plan["measured"]) and part.config.batch_size == 24

    off = train_generator(images, labels, 10, timed("vae", 2.0, plan={"auto": False}), "cpu", tmp_path / "off")
    assert off.plan["source"] == "off" and off.config.vae.width == 64 and off.config.batch_size == 128


def test_a_resumed_run_reuses_its_plan_instead_of_planning_again(fashion, tmp_path):
    """A second warm-up could pick another width and silently change the trajectory halfway: the resumed run
    takes the plan from the checkpoint it continues, resumes from its step, and records that it did."""
    images, labels = fashion
    first = train_generator(images, labels, 10, timed("vae", 6.0), "cpu", tmp_path)
    ckpt = load_checkpoint(first.checkpoint_path)
    atomic_save({**ckpt, "finished": False}, first.checkpoint_path)  # as if killed after its last step
    lines: list[str] = []
    again = train_generator(images, labels, 10, timed("vae", 9.0), "cpu", tmp_path, log=lines.append)
    assert again.resumed_from_step == first.steps > 0
    assert again.plan["reused"] and {k: v for k, v in again.plan.items() if k != "reused"} == {
        k: v for k, v in first.plan.items() if k != "reused"}
    assert any("reused from the checkpoint" in line for line in lines)
    assert again.events[-1] == {"event": "resumed", "step": first.steps}

    # A different request (another seed) is not the same run: it plans afresh.
    other = train_generator(images, labels, 10, timed("vae", 6.0, seed=3), "cpu", tmp_path)
    assert other.resumed_from_step is None and not other.plan["reused"]


def test_cpu_warnings_name_families_that_cannot_be_useful_in_the_budget(fashion, tmp_path):
    """Families the benchmark showed to stay weak on a CPU at 28x28 within 5 minutes are trained with a warning
    (logged, in the result, in the checkpoint); too small a budget for any candidate's target says so too."""
    images, labels = fashion
    warned: list[str] = []
    gan = train_generator(images, labels, 10, timed("gan", 4.0), "cpu", tmp_path / "gan", warn=warned.append)
    assert CPU_NOTES["gan"] in gan.warnings and CPU_NOTES["gan"] in gan.plan["warnings"]
    assert any(CPU_NOTES["gan"] in w for w in warned)
    short = timed("vae", 2.0, max_steps=10**9, plan={"warmup_seconds": 1.0, "timed_steps": 1, "target_steps": 10**6})
    vae = train_generator(images, labels, 10, short, "cpu", tmp_path / "vae")
    assert any("of the 1000000 steps it needs" in w for w in vae.warnings)
    assert not any(w in vae.warnings for w in CPU_NOTES.values()), "the VAE is useful on a CPU: no family note"

    # 8x8 digits train as MLPs, which a CPU handles: no family note for the GAN there.
    digits, dlabels, _ = load_digits_uint8()
    small = train_generator(digits[:300], dlabels[:300], 10, timed("gan", 4.0), "cpu", tmp_path / "digits")
    assert CPU_NOTES["gan"] not in small.warnings
    assert json.loads(json.dumps(small.plan)) == small.plan  # plain data


def test_tiny_images_plan_among_mlps_and_a_step_budget_keeps_the_reference(tmp_path):
    digits, labels, _ = load_digits_uint8()
    assert {c.arch for c in ladder((1, 8, 8))} == {"mlp"} and ladder((1, 8, 8))[-1].width == 64
    steps_only = TrainConfig(family="vae", max_steps=5, max_seconds=None, checkpoint_every=0, sample_every=0)
    result = train_generator(digits[:200], labels[:200], 10, steps_only, "cpu", tmp_path)
    assert result.plan["source"] == "reference" and result.config == steps_only
    assert np.isfinite(list(result.final_losses.values())).all()


def test_the_torch_device_resource_gives_cpu_work_one_thread_by_default():
    """Two intra-op threads collapse beside one busy process on a 2-core box (1.7-2.7 against 69 GAN steps/s in
    `make demo`): the pipeline's default is one, and `cpu_threads: null` restores PyTorch's own."""
    import torch

    from resources import TorchDevice

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert TorchDevice(device="cpu").resolve() == "cpu" and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        TorchDevice(device="cpu", cpu_threads=None).resolve()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
