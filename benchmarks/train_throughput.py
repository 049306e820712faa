"""Overhead of train_generator's loop: steps/s vs a minimal hand-written loop of the same GAN, same batch.

    python benchmarks/train_throughput.py               # digits 8x8 MLP GAN, batch 128, 1000 steps per run
    python benchmarks/train_throughput.py --size 28     # conv GAN on random 28x28 RGB

Both loops build the same ConditionalGAN from the same config and compute the same objective (hinge, DiffAugment,
mode seeking); the hand-written one has no EMA, no checkpoints, no logging, no sampler state. Runs alternate
(A B A B ...) and the best of each is reported, which filters out load from other processes on a shared box.
train_generator runs with its default checkpoint cadence (500 steps) and no mid-run sample grids.
On CUDA it also reports AMP (bf16/fp16 autocast + channels_last) vs fp32 steps/s for train_generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F

from synthdata.datasets import load_digits_uint8
from synthdata.models import ConditionalGAN
from synthdata.models.diffaugment import diff_augment
from synthdata.training.loop import TrainConfig, train_generator


def hand_loop(images: np.ndarray, labels: np.ndarray, num_classes: int, cfg: TrainConfig, steps: int, device: str) -> float:
    torch.manual_seed(cfg.seed)
    x_all = torch.from_numpy(images if images.ndim == 4 else images[..., None]).permute(0, 3, 1, 2).contiguous().to(device)
    y_all = torch.from_numpy(labels).to(device)
    model = ConditionalGAN(tuple(x_all.shape[1:]), num_classes, cfg.gan).to(device)
    G, D, g = model.G, model.D, cfg.gan
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.resolved_lr() * g.d_lr_mult, betas=g.betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.resolved_lr(), betas=g.betas)
    b, half = cfg.batch_size, cfg.batch_size // 2
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (b,), device=device)
        x, y = x_all[idx].float() / 127.5 - 1, y_all[idx]
        with torch.no_grad():
            fake = G(torch.randn(b, g.z_dim, device=device), y)
        loss_d = F.relu(1 - D(diff_augment(x, g.diffaugment), y)).mean() + F.relu(1 + D(diff_augment(fake, g.diffaugment), y)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        z = torch.randn(b, g.z_dim, device=device)
        y = torch.cat([y[:half], y[:half], y[2 * half :]])
        fake = G(z, y)
        spread = (fake[:half] - fake[half : 2 * half]).abs().flatten(1).mean(1) / (z[:half] - z[half : 2 * half]).abs().mean(1)
        loss_g = -D(diff_augment(fake, g.diffaugment), y).mean() + g.mode_seeking / (spread.mean() + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
    loss_g.detach().item()  # wait for the device
    return steps / (time.perf_counter() - t0)


def loop_rate(images, labels, num_classes, cfg: TrainConfig, device: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        return train_generator(images, labels, num_classes, cfg, device, Path(d)).steps_per_second


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=8, help="8: sklearn digits (MLP GAN); 28/64: random RGB (conv GAN)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    if args.size == 8:
        images, labels, names = load_digits_uint8()
        num_classes = len(names)
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (2000, args.size, args.size, 3), dtype=np.uint8)
        labels, num_classes = rng.integers(0, 10, 2000), 10
    cfg = TrainConfig(family="gan", max_steps=args.steps, max_seconds=None, batch_size=args.batch_size, sample_every=0,
                      gan={"width": 32} if args.size > 8 else {})

    hand, loop = [], []
    for _ in range(args.repeats):
        hand.append(hand_loop(images, labels, num_classes, cfg, args.steps, device))
        loop.append(loop_rate(images, labels, num_classes, cfg, device))
        print(f"hand-written {hand[-1]:.1f} steps/s | train_generator {loop[-1]:.1f} steps/s", flush=True)
    out = {"benchmark": "train_throughput", "device": device, "size": args.size, "batch_size": args.batch_size,
           "steps": args.steps, "threads": args.threads, "hand_steps_per_s": round(max(hand), 1),
           "train_generator_steps_per_s": round(max(loop), 1), "ratio": round(max(loop) / max(hand), 3), "target": 0.9}
    if device == "cuda":
        fp32 = cfg.model_copy(update={"amp": "off"})
        out["amp_steps_per_s"] = round(max(loop_rate(images, labels, num_classes, cfg, device) for _ in range(2)), 1)
        out["fp32_steps_per_s"] = round(max(loop_rate(images, labels, num_classes, fp32, device) for _ in range(2)), 1)
        out["amp_speedup"] = round(out["amp_steps_per_s"] / out["fp32_steps_per_s"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
