"""The training loop under torchrun: 2 CPU processes with gloo, a real (short) GAN run on digits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from synthdata.training.checkpoint import load_checkpoint, state_digest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from synthdata.datasets import load_digits_uint8
    from synthdata.training.loop import TrainConfig, train_generator
    images, labels, _ = load_digits_uint8()
    cfg = TrainConfig(family="gan", max_steps=20, max_seconds=None, batch_size=64, checkpoint_every=10,
                      sample_every=0, log_every=10, grid_per_class=2)
    lines = []
    r = train_generator(images, labels, 10, cfg, "cpu", Path(sys.argv[1]), log=lines.append)
    out = {{"rank": int(os.environ["RANK"]), "world": int(os.environ["WORLD_SIZE"]), "steps": r.steps,
           "log_lines": len(lines), "grid_png": len(r.sample_grid_png)}}
    Path(sys.argv[1], "rank%d.json" % out["rank"]).write_text(json.dumps(out))
    """
)


def test_two_gloo_ranks_stay_identical(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [20, 20]
    assert ranks[0]["log_lines"] > 0 and ranks[1]["log_lines"] == 0  # only rank 0 logs...
    assert ranks[0]["grid_png"] > 0 and ranks[1]["grid_png"] == 0  # ...and renders

    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["finished"] and ckpt["step"] == 20 and ckpt["world_size"] == 2
    # Each rank hashed its own final weights into the checkpoint: they must be bit-identical, and equal the
    # weights rank 0 saved. Each rank also kept its own RNG stream (different noise per rank).
    assert len(ckpt["rank_digests"]) == 2
    assert ckpt["rank_digests"][0] == ckpt["rank_digests"][1] == state_digest(ckpt["model"])
    assert len(ckpt["rng"]) == 2 and not ckpt["rng"][0]["torch"].equal(ckpt["rng"][1]["torch"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "rank0.json", "rank1.json"]
