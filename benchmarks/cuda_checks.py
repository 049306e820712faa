"""The CUDA paths, checked and timed on a real GPU in one short run (skips with a message where there is none).

    python benchmarks/cuda_checks.py            # ~3 min on one H100/H200

What it checks (each prints PASS/FAIL and a number; the script exits 1 if any check failed):
1. augmentation on the GPU gives the CPU's records and (to float tolerance) the CPU's images, and how fast it
   runs at 64x64 RGB against the CPU engine on the same machine;
2. every family (GAN, VAE, diffusion) trains on CUDA under AMP (bf16 where the card has it) and in fp32 with
   finite losses, and the AMP / fp32 steps per second of each;
3. a checkpoint written on CUDA loads with ``weights_only=True`` on the CPU and samples images there;
4. a run stopped mid-way and resumed on CUDA ends where a straight run ends (bit-identical, or the largest
   weight difference where cuDNN's non-deterministic kernels make it drift).

Data: the 28x28 elastic digits of ``families_28x28`` (real handwriting, no download).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.augment_speed import bench_policy, make_images
from benchmarks.families_28x28 import digits28, family_overrides
from synthdata.augment import augment_batch
from synthdata.training.checkpoint import load_checkpoint
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.sample import load_generator

DEV = "cuda"  # --device cpu runs the same script on the CPU, to try it out where there is no GPU
RESULTS: dict[str, object] = {}
FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def augment_checks(n: int) -> None:
    policy = bench_policy(rgb=True)
    images = make_images(256, 3, 64, seed=1)
    labels = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(0))
    ids = [f"r{i}" for i in range(256)]
    cpu = augment_batch(images, labels, 10, ids, policy, seed=3)
    gpu = augment_batch(images.to(DEV), labels.to(DEV), 10, ids, policy, seed=3)
    diff = float((gpu.images.cpu() - cpu.images).abs().max())
    check("augment_gpu_matches_cpu", gpu.records == cpu.records and diff <= 1e-4 and gpu.images.device.type == DEV,
          f"records equal={gpu.records == cpu.records}, max |gpu - cpu| = {diff:.2e}")

    big = make_images(n, 3, 64, seed=2)
    big_labels = torch.zeros(n, dtype=torch.long)
    big_ids = [f"b{i}" for i in range(n)]

    def rate(x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
        best, n_x = float("inf"), len(x)
        for _ in range(3):
            if x.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for s in range(0, n_x, batch):
                augment_batch(x[s : s + batch], y[s : s + batch], 10, big_ids[s : s + batch], policy, seed=0)
            if x.is_cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return n_x / best

    rate(big[:512].to(DEV), big_labels[:512].to(DEV), 512)  # warm-up: kernels, noise bank
    gpu_rate = rate(big.to(DEV), big_labels.to(DEV), 4096)
    cpu_rate = rate(big, big_labels, 512)
    RESULTS["augment_64x64_rgb"] = {"gpu_img_per_s": round(gpu_rate), "cpu_img_per_s": round(cpu_rate),
                                    "cpu_threads": torch.get_num_threads(), "speedup": round(gpu_rate / cpu_rate, 1)}
    print(f"augment 64x64 RGB: GPU {gpu_rate:,.0f} img/s (batch 4096) | CPU engine {cpu_rate:,.0f} img/s "
          f"({torch.get_num_threads()} threads, batch 512)", flush=True)


def family_checks(x: np.ndarray, y: np.ndarray, steps: int) -> None:
    bf16 = DEV == "cuda" and torch.cuda.is_bf16_supported()
    for family in ("gan", "vae", "diffusion"):
        rates = {}
        for amp in ("auto", "off"):
            cfg = TrainConfig.model_validate({"family": family, "max_steps": steps, "max_seconds": None,
                                              "batch_size": 128, "sample_every": 0, "log_every": 25, "amp": amp,
                                              **family_overrides(family, 32)})
            with tempfile.TemporaryDirectory() as d:
                res = train_generator(x, y, 10, cfg, DEV, Path(d))
                losses = [v for row in res.history for k, v in row.items() if k != "step"]
                finite = bool(np.isfinite(losses).all()) and len(losses) > 0
                check(f"{family}_{amp}_finite_losses", finite, f"{len(res.history)} history rows, "
                      f"final {json.dumps({k: round(v, 4) for k, v in res.final_losses.items()})}")
                rates[amp] = res.steps_per_second
                if amp == "auto":
                    ckpt = load_checkpoint(res.checkpoint_path)  # weights_only=True, onto the CPU
                    on_cpu = all(t.device.type == "cpu" for t in ckpt["ema"].values())
                    sample = load_generator(res.checkpoint_path, "cpu").sample(np.repeat(np.arange(10), 4), seed=1)
                    ok = on_cpu and sample.dtype == np.uint8 and sample.shape[0] == 40 and sample.std() > 0
                    check(f"{family}_cuda_checkpoint_samples_on_cpu", ok, f"sample {sample.shape} {sample.dtype}, "
                          f"pixel std {sample.std():.1f}")
        RESULTS[f"{family}_steps_per_s"] = {"amp": round(rates["auto"], 1), "fp32": round(rates["off"], 1),
                                            "amp_dtype": "bf16" if bf16 else "fp16",
                                            "amp_speedup": round(rates["auto"] / rates["off"], 2)}
        print(f"{family}: AMP {rates['auto']:.1f} steps/s | fp32 {rates['off']:.1f} steps/s", flush=True)


def resume_check(x: np.ndarray, y: np.ndarray, steps: int) -> None:
    """Copy the mid-run checkpoint aside as a kill would leave it, resume from it, compare with the straight run."""
    cfg = TrainConfig.model_validate({"family": "gan", "max_steps": steps, "max_seconds": None, "batch_size": 128,
                                      "sample_every": 0, "log_every": max(1, steps // 6), "checkpoint_every": steps // 2,
                                      **family_overrides("gan", 32)})
    root = Path(tempfile.mkdtemp(prefix="cuda_resume_"))
    straight, resumed = root / "straight", root / "resumed"
    resumed.mkdir()

    def grab(_: str) -> None:
        ckpt = straight / "checkpoint.pt"
        if ckpt.exists() and not (resumed / "checkpoint.pt").exists() and not load_checkpoint(ckpt)["finished"]:
            shutil.copy(ckpt, resumed / "checkpoint.pt")

    train_generator(x, y, 10, cfg, DEV, straight, log=grab)
    mid = load_checkpoint(resumed / "checkpoint.pt")
    res = train_generator(x, y, 10, cfg, DEV, resumed)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(resumed / "checkpoint.pt")
    worst = max(float((a["model"][k].float() - b["model"][k].float()).abs().max()) for k in a["model"])
    same = all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    RESULTS["resume"] = {"from_step": int(mid["step"]), "to_step": res.steps, "bit_identical": same,
                         "max_weight_diff": worst}
    check("cuda_resume", res.resumed_from_step == int(mid["step"]) and res.steps == steps and worst < 1e-2,
          f"resumed from step {mid['step']} to {res.steps}; bit-identical={same}, largest weight difference {worst:.2e}")
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per family and precision")
    p.add_argument("--augment-n", type=int, default=32_768)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    global DEV
    DEV = args.device
    if DEV == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return
    RESULTS["device"] = torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu"
    RESULTS["torch"] = torch.__version__
    print(f"{RESULTS['device']}, torch {torch.__version__}, bf16={DEV == 'cuda' and torch.cuda.is_bf16_supported()}",
          flush=True)
    x, y = digits28()
    augment_checks(args.augment_n)
    family_checks(x, y, args.steps)
    resume_check(x, y, args.steps)
    RESULTS["failed"] = FAILED
    print(json.dumps(RESULTS, indent=1))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
