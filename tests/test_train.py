"""train_generator / load_generator end to end on real (small) training runs, including kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate.utility import classifier_accuracy
from synthdata.training.checkpoint import atomic_save, load_checkpoint, state_digest
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.sample import load_generator

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    images, labels, _ = load_digits_uint8()
    return images, labels


def rgb_set(size: int, n: int = 40, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Random-ish RGB images whose class decides the colour of a square: (n, size, size, 3) uint8."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        y, x = rng.integers(0, size // 2, 2)
        images[i, y : y + size // 2, x : x + size // 2, c % 3] = 255
    return images, labels


def quick(family: str, steps: int, **kw) -> TrainConfig:
    extra = {"diffusion": {"sampling_steps": 5}} if family == "diffusion" else {}
    return TrainConfig.model_validate(
        {"family": family, "max_steps": steps, "max_seconds": None, "batch_size": 32, "checkpoint_every": 0,
         "sample_every": 0, "log_every": 10, "grid_per_class": 2, **extra, **kw}
    )


@pytest.mark.parametrize("family", ["gan", "vae", "diffusion"])
def test_digits_run_result_and_sampling(family, digits, tmp_path):
    images, labels = digits
    lines: list[str] = []
    result = train_generator(images, labels, 10, quick(family, 30), "cpu", tmp_path, log=lines.append)
    assert result.steps == 30 and result.resumed_from_step is None
    assert result.checkpoint_path == tmp_path / "checkpoint.pt" and result.checkpoint_path.exists()
    assert [row["step"] for row in result.history] == [10, 20, 30]
    assert set(result.final_losses) == set(result.history[-1]) - {"step", "steps_per_second"}
    assert all(np.isfinite(v) for v in result.final_losses.values())
    assert all(row["steps_per_second"] > 0 for row in result.history)
    assert result.sample_grid_png.startswith(PNG) and result.loss_curve_png.startswith(PNG)
    assert result.curves_png.startswith(PNG)
    # A step budget alone has nothing to fit into: the reference size, no warm-up, the config as given.
    assert result.plan["source"] == "reference" and result.plan["measured"] == [] and result.plan["warmup_seconds"] == 0
    assert result.warnings == [] and result.events == [] and result.probes == []
    assert result.steps_per_second > 0 and any("step 30" in line for line in lines)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary checkpoint files may be left behind"

    gen = load_generator(result.checkpoint_path)
    assert (gen.family, gen.num_classes, gen.shape) == (family, 10, (1, 8, 8))
    y = np.array([0, 1, 2, 9, 9])
    a, b = gen.sample(y, seed=3), gen.sample(y, seed=3, batch_size=2)
    assert a.shape == (5, 8, 8) and a.dtype == np.uint8  # same rank as the (N, 8, 8) training input
    assert np.array_equal(a, gen.sample(y, seed=3)) and not np.array_equal(a, gen.sample(y, seed=4))
    assert b.shape == a.shape


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("family", ["gan", "vae", "diffusion"])
def test_rgb_runs(family, size, tmp_path):
    images, labels = rgb_set(size)
    cfg = quick(family, 2, batch_size=8, **{family: {"width": 16, **({"sampling_steps": 3} if family == "diffusion" else {})}})
    result = train_generator(images, labels, 4, cfg, "cpu", tmp_path)
    out = load_generator(result.checkpoint_path).sample(np.array([0, 1, 2, 3, 3]), seed=0)
    assert out.shape == (5, size, size, 3) and out.dtype == np.uint8


def test_same_seed_same_weights_and_different_seed_differs(digits, tmp_path):
    images, labels = digits
    r1 = train_generator(images, labels, 10, quick("gan", 20), "cpu", tmp_path / "a")
    r2 = train_generator(images, labels, 10, quick("gan", 20), "cpu", tmp_path / "b")
    r3 = train_generator(images, labels, 10, quick("gan", 20, seed=1), "cpu", tmp_path / "c")
    digest = lambda r: state_digest(load_checkpoint(r.checkpoint_path)["model"])  # noqa: E731
    assert digest(r1) == digest(r2) != digest(r3)


def test_time_budget_stops_the_run(digits, tmp_path):
    images, labels = digits
    cfg = quick("vae", 10**9, max_seconds=1.0)
    result = train_generator(images, labels, 10, cfg, "cpu", tmp_path)
    assert 0 < result.steps < 10**9 and 0.9 < result.seconds < 3.0


def test_learning_numbers(digits, tmp_path):
    """Short real runs learn. Measured on the dev box: VAE -ELBO 157 -> 76 in 200 steps, diffusion eps-MSE
    0.50 -> 0.27 (EDM-preconditioned: its skip already gets the noisiest steps right at step 10; plain epsilon
    prediction went 0.76 -> 0.28), and a logistic regression trained only on samples of a 300-step GAN scores
    0.81 on the real digits (chance: 0.10). The asserted bounds leave room for other CPUs / BLAS builds."""
    images, labels = digits
    vae = train_generator(images, labels, 10, quick("vae", 200, batch_size=64), "cpu", tmp_path / "vae")
    assert vae.history[-1]["loss"] < 0.6 * vae.history[0]["loss"]
    diff = train_generator(images, labels, 10, quick("diffusion", 200, batch_size=64), "cpu", tmp_path / "diff")
    assert diff.final_losses["loss"] < min(0.65 * diff.history[0]["loss"], 0.35)
    gan = train_generator(images, labels, 10, quick("gan", 300, batch_size=64), "cpu", tmp_path / "gan")
    y = np.repeat(np.arange(10), 30)
    acc = classifier_accuracy(load_generator(gan.checkpoint_path).sample(y, seed=0), y, images, labels)
    assert acc > 0.6, acc


def test_atomic_save_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1, "w": torch.arange(3)}, path)
    with pytest.raises(Exception):
        atomic_save({"step": 2, "bad": lambda: None}, path)  # pickling fails halfway through the write
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_resume_only_matching_unfinished_runs(digits, tmp_path):
    """A run stopped at step 15 (its checkpoint marked unfinished) and resumed to 30 equals an uninterrupted 30;
    a checkpoint from another config is ignored, and a finished run is not resumed."""
    images, labels = digits
    for family in ["gan", "vae", "diffusion"]:
        full = train_generator(images, labels, 10, quick(family, 30), "cpu", tmp_path / family / "full")
        part_dir = tmp_path / family / "part"
        train_generator(images, labels, 10, quick(family, 15), "cpu", part_dir)
        ckpt = load_checkpoint(part_dir / "checkpoint.pt")
        # What a mid-run checkpoint at step 15 holds: the same state, unfinished, without the final off-cadence
        # history row that only a finishing run appends.
        history = [r for r in ckpt["history"] if r["step"] % 10 == 0]
        atomic_save({**ckpt, "finished": False, "history": history}, part_dir / "checkpoint.pt")
        resumed = train_generator(images, labels, 10, quick(family, 30), "cpu", part_dir)
        assert resumed.resumed_from_step == 15 and resumed.steps == 30
        assert [r["step"] for r in resumed.history] == [10, 20, 30]
        a, b = load_checkpoint(full.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
        for key in ("model", "ema"):
            assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), (family, key)

    other = train_generator(images, labels, 10, quick("gan", 30, seed=7), "cpu", tmp_path / "gan" / "part")
    assert other.resumed_from_step is None  # the finished seed-0 run there was not reused
    again = train_generator(images, labels, 10, quick("gan", 30, seed=7), "cpu", tmp_path / "gan" / "part")
    assert again.resumed_from_step is None  # finished runs start over


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from synthdata.datasets import load_digits_uint8
    from synthdata.training.loop import TrainConfig, train_generator
    images, labels, _ = load_digits_uint8()
    cfg = TrainConfig(family="gan", max_steps=int(sys.argv[2]), max_seconds=None, batch_size=32,
                      checkpoint_every=25, sample_every=0, log_every=25)
    r = train_generator(images[:600], labels[:600], 10, cfg, "cpu", Path(sys.argv[1]), log=print)
    print("RESUMED_FROM", r.resumed_from_step, flush=True)
    """
)


def test_kill_and_resume_is_bit_identical(tmp_path):
    script = tmp_path / "train_digits.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO)))
    steps = "400"
    def run(d: Path) -> int | None:
        out = subprocess.run([sys.executable, str(script), str(d), steps], check=True, capture_output=True, text=True)
        value = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("RESUMED_FROM")][0]
        return None if value == "None" else int(value)

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed_dir), steps], stdout=subprocess.DEVNULL)
    ckpt_path = killed_dir / "checkpoint.pt"
    deadline = time.monotonic() + 60
    while not ckpt_path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    mid = load_checkpoint(ckpt_path)
    assert not mid["finished"] and 0 < mid["step"] < int(steps)

    resumed_from = run(killed_dir)  # resumes from the mid-run checkpoint and finishes
    assert resumed_from == mid["step"] > 0, "the second run must really resume, not start over"
    assert run(tmp_path / "straight") is None
    a, b = load_checkpoint(killed_dir / "checkpoint.pt"), load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert a["finished"] and b["finished"] and a["step"] == b["step"] == int(steps)
    for key in ("model", "ema"):
        assert state_digest(a[key]) == state_digest(b[key]), key  # bit-equal to the uninterrupted run
    assert [r["step"] for r in a["history"]] == [r["step"] for r in b["history"]]
    assert a["events"] == [{"event": "resumed", "step": mid["step"]}] and b["events"] == []


def test_an_unreadable_checkpoint_is_moved_aside_with_a_warning_not_silently_restarted(digits, tmp_path):
    images, labels = digits
    first = train_generator(images, labels, 10, quick("vae", 20, checkpoint_every=10), "cpu", tmp_path)
    ckpt = load_checkpoint(first.checkpoint_path)
    atomic_save({**ckpt, "finished": False}, first.checkpoint_path)  # a resumable mid-run checkpoint...
    data = first.checkpoint_path.read_bytes()
    first.checkpoint_path.write_bytes(data[: len(data) // 2])  # ...cut in half, as a full disk or a bad copy leaves it

    lines, warned = [], []
    result = train_generator(images, labels, 10, quick("vae", 20), "cpu", tmp_path, log=lines.append, warn=warned.append)
    aside = list(tmp_path.glob("checkpoint.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == data[: len(data) // 2], "the unreadable file is kept aside"
    assert result.resumed_from_step is None and result.steps == 20
    assert len(warned) == 1 and "could not be loaded" in warned[0] and str(aside[0]) in warned[0]
    assert result.warnings and str(aside[0]) in result.warnings[0]
    event = result.events[0]
    assert event["event"] == "unreadable checkpoint" and event["moved_to"] == str(aside[0]) and event["error"]
    assert load_checkpoint(result.checkpoint_path)["events"] == result.events  # the next checkpoint records it

    # The same run over a readable checkpoint: no warning, nothing moved (the check fires only on a bad file).
    atomic_save({**load_checkpoint(result.checkpoint_path), "finished": False, "step": 10}, result.checkpoint_path)
    warned.clear()
    train_generator(images, labels, 10, quick("vae", 20), "cpu", tmp_path, warn=warned.append)
    assert warned == [] and len(list(tmp_path.glob("checkpoint.pt.corrupt-*"))) == 1


def test_quality_probe_on_val_tracks_learning_and_never_touches_the_training_rng(digits, tmp_path):
    """The probe (ridge classifier fit on samples, scored on val, over the same fit on real train images) is near
    chance for an untrained generator and high after real training; probing does not change the trained weights."""
    images, labels = digits
    train, val = slice(0, 1400), slice(1400, None)
    kw = dict(val_images=images[val], val_labels=labels[val])
    raw = train_generator(images[train], labels[train], 10, quick("vae", 1, eval_every=1), "cpu", tmp_path / "raw", **kw)
    cfg = quick("vae", 300, batch_size=64, eval_every=100)
    trained = train_generator(images[train], labels[train], 10, cfg, "cpu", tmp_path / "trained", **kw)
    silent = train_generator(images[train], labels[train], 10, cfg, "cpu", tmp_path / "silent")  # no val: no probes

    assert [p["step"] for p in trained.probes] == [100, 200, 300] and silent.probes == []
    assert raw.probes[0]["probe_ratio"] < 0.5 < 0.85 < trained.probes[-1]["probe_ratio"], (raw.probes, trained.probes)
    assert trained.probes[-1]["probe_trtr"] > 0.8  # the real reference: ridge on val digits
    assert trained.eval_seconds > 0 and load_checkpoint(trained.checkpoint_path)["probes"] == trained.probes
    digest = lambda r: state_digest(load_checkpoint(r.checkpoint_path)["model"])  # noqa: E731
    assert digest(trained) == digest(silent)


def test_mixup_and_cutmix_rows_are_left_out_of_generator_input(digits, tmp_path):
    """Rows whose recorded ops include a mixing op (stage "mixing" in the registry) carry two classes; a
    class-conditional generator must not train on them. Everything else is kept."""
    from synthdata.augment import AugmentPolicy, Cutmix, HFlip, Mixup
    from synthdata.augment.dataset import augment_split
    from synthdata.io.store import BlobStore
    from synthdata.training.inputs import generator_rows, mixing_ops

    images, labels = digits
    policy = AugmentPolicy(ops=[HFlip(p=0.5), Mixup(p=0.3, alpha=0.4), Cutmix(p=0.3)])
    rows = augment_split(images[:64], [f"d{i}" for i in range(64)], [str(v) for v in labels[:64]], policy, 0, 1,
                         batch_size=32, device="cpu", store=BlobStore(tmp_path)).rows
    keep = np.array(generator_rows(rows["ops"]))
    blended = np.array([json.loads(s).get(lbl, 0.0) < 1.0 for s, lbl in zip(rows["soft_label"], rows["label"])])
    assert mixing_ops() == {"mixup", "cutmix"}
    assert 0 < (~keep).sum() < len(rows), "the policy makes both kinds of row"
    assert not (keep & blended).any(), "no row with a blended (soft) label reaches the generator"
    assert (keep == np.array(["mixup" not in o and "cutmix" not in o for o in rows["ops"]])).all()
