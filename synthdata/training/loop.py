"""Train a class-conditional generator (GAN, VAE or diffusion) on an in-memory uint8 image set.

Read `train_generator` top to bottom: set up (distributed, seeds, model, EMA, optimizers), maybe resume from
run_dir/checkpoint.pt, then the loop - sample a batch, let the model take its step, update the EMA, log,
checkpoint - until the step or time budget runs out; finally write the finished checkpoint and render pictures.

Determinism: with a step budget (max_seconds=None) a run is a pure function of (config, data, world size,
machine): a run that is killed and resumed any number of times ends with bit-identical weights to one that was
never interrupted. With a time budget the stopping step depends on machine speed and load, so only the
trajectory up to the step where it stopped is reproducible.

Distributed: launch the same code with torchrun; RANK / WORLD_SIZE / LOCAL_RANK come from the environment.
`batch_size` is the global batch (each rank takes batch_size // world_size), gradients are averaged across
ranks after every backward, and only rank 0 writes checkpoints, sample grids and logs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
import torch
import torch.distributed as dist
from torch import nn

from synthdata import render
from synthdata.training.checkpoint import atomic_save, capture_rng, fingerprint, load_checkpoint, restore_rng, state_digest
from synthdata.models import MODEL_FAMILIES, DiffusionConfig, GANConfig, GenerativeModel, VAEConfig

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that change how long / how chattily a run goes, not what any given step computes.
BUDGET_FIELDS = {"max_steps", "max_seconds", "checkpoint_every", "sample_every", "log_every"}


class TrainConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    family: Literal["gan", "vae", "diffusion"] = "gan"
    max_steps: int = pydantic.Field(20000, ge=1)
    max_seconds: float | None = 60.0  # time budget; whichever of steps/time runs out first
    batch_size: int = pydantic.Field(128, ge=1)  # global batch (split across DDP ranks)
    lr: float | None = None  # None: the family's default (gan 2e-4, vae 1e-3, diffusion 1e-3)
    seed: int = 0
    ema_decay: float = 0.999
    checkpoint_every: int = 500  # steps; 0 = only the final checkpoint
    sample_every: int = 1000  # steps; writes run_dir/samples/step_XXXXXXX.png (rank 0); 0 = never
    log_every: int = 50  # steps between history rows / log lines
    grid_per_class: int = 10  # columns of the returned sample grid (one row per class)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA only; CPU always trains in fp32
    channels_last: bool = True  # CUDA conv models only
    gan: GANConfig = GANConfig()
    vae: VAEConfig = VAEConfig()
    diffusion: DiffusionConfig = DiffusionConfig()

    def family_config(self) -> pydantic.BaseModel:
        return getattr(self, self.family)

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else MODEL_FAMILIES[self.family].default_lr

    def trajectory_dict(self) -> dict[str, Any]:
        """The part of the config that determines what each step computes (used in the run fingerprint)."""
        return self.model_dump(mode="json", exclude=BUDGET_FIELDS)


@dataclass
class TrainResult:
    checkpoint_path: Path  # final checkpoint (EMA weights + everything), written atomically
    steps: int  # total optimisation steps of the run, including those before a resume
    seconds: float  # wall time of this call's training loop
    steps_per_second: float  # steps taken by this call / seconds
    final_losses: dict[str, float]
    history: list[dict[str, float]]  # {"step": ..., <loss>: ...} every log_every steps (whole run)
    resumed_from_step: int | None
    sample_grid_png: bytes  # EMA samples, one row per class (b"" on DDP ranks other than 0)
    loss_curve_png: bytes  # (b"" on DDP ranks other than 0)


def build_model(config: TrainConfig, shape: tuple[int, int, int], num_classes: int) -> GenerativeModel:
    return MODEL_FAMILIES[config.family](shape, num_classes, config.family_config())


def to_nchw(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    return np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))


def to_uint8(x: torch.Tensor, input_rank: int) -> np.ndarray:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, H, W, C), or (N, H, W) if the training images had no channel axis."""
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return arr[..., 0] if input_rank == 3 else arr


# ----------------------------------------------------------------------------------------------------------------
# Distributed plumbing


@dataclass
class DistInfo:
    rank: int
    world: int
    device: torch.device
    owns_group: bool  # we called init_process_group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistInfo:
    dev = torch.device(device)
    if dist.is_available() and dist.is_initialized():  # the caller set up the process group
        rank, world, owns = dist.get_rank(), dist.get_world_size(), False
    else:
        rank, world, owns = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), False
    if dev.type == "cuda":
        if "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        elif dev.index is None:  # set_device() refuses a bare "cuda"
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
        owns = True
    return DistInfo(rank, world, dev, owns)


def average_gradients(params: list[nn.Parameter], world: int) -> None:
    """All-reduce every gradient as one flat buffer (one collective per backward instead of one per tensor).

    Done by hand rather than with DistributedDataParallel because a GAN step has two backward passes over two
    different sub-networks with parameters frozen in between, which DDP's autograd hooks handle poorly.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class ShardedSampler:
    """Minibatches of indices: a fresh permutation of the whole set each epoch, rank r taking every world-th index.

    Like torch's DistributedSampler, each epoch's permutation comes from a generator seeded with (seed, epoch), so
    every rank agrees on it without communicating and the sampler's entire state is (epoch, position).
    Each rank gets N // world indices per epoch (the remainder is dropped so ranks stay in lockstep); a batch never
    straddles two epochs.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int, device: torch.device) -> None:
        if n < world:
            raise ValueError(f"{n} images cannot be sharded over {world} ranks")
        self.n, self.seed, self.rank, self.world, self.device = n, seed, rank, world, device
        self.per_rank = n // world
        self.batch = min(max(1, batch_size // world), self.per_rank)
        self.epoch, self.pos = 0, 0
        self._shard: torch.Tensor | None = None

    def _make_shard(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank : self.per_rank * self.world : self.world].to(self.device)

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.per_rank:
            self.epoch, self.pos, self._shard = self.epoch + 1, 0, None
        if self._shard is None:
            self._shard = self._make_shard()
        idx = self._shard[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos, self._shard = int(state["epoch"]), int(state["pos"]), None


# ----------------------------------------------------------------------------------------------------------------
# EMA, AMP, checkpoint contents


class EMA:
    """Exponential moving average of the sampling part of the model; samples always come from the EMA copy.

    The decay ramps up as min(decay, (1 + t) / (10 + t)) so that in a short run the average is not dominated by
    the random initial weights.
    """

    def __init__(self, model: GenerativeModel, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self._ema = list(self.model.sampling_module().parameters())
        self._live = list(model.sampling_module().parameters())
        self._ema_buffers = list(self.model.sampling_module().buffers())
        self._live_buffers = list(model.sampling_module().buffers())

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._ema, self._live, 1.0 - decay)
        if self._ema_buffers:  # one launch for all of them: on a GPU each copy_ would be its own kernel
            torch._foreach_copy_(self._ema_buffers, self._live_buffers)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.sampling_module().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.sampling_module().load_state_dict(state)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if config.amp == "bf16" else torch.float16


def derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([abs(p) for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sample_grid(ema: EMA, num_classes: int, per_class: int, seed: int, device: torch.device, input_rank: int) -> bytes:
    labels = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    images = ema.model.sample(labels, torch.Generator(device).manual_seed(seed))
    return render.image_grid(to_uint8(images, input_rank), ncol=per_class)


def loss_curve(history: list[dict[str, float]], family: str) -> bytes:
    names = [k for k in history[0] if k != "step"] if history else []
    series = {k: [row[k] for row in history] for k in names}
    return render.line_plot(series, x=[row["step"] for row in history], title=f"{family} training losses")


# ----------------------------------------------------------------------------------------------------------------
# The loop


def train_generator(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: TrainConfig,
    device: str,
    run_dir: Path,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    dinfo = setup_distributed(device)
    dev, rank, world = dinfo.device, dinfo.rank, dinfo.world
    say = (log or (lambda _msg: None)) if dinfo.is_main else (lambda _msg: None)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    if dinfo.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    data_np = to_nchw(images)
    labels_np = np.asarray(labels).astype(np.int64)
    if len(labels_np) != len(data_np) or labels_np.min() < 0 or labels_np.max() >= num_classes:
        raise ValueError("labels must be one int in [0, num_classes) per image")
    shape = tuple(int(s) for s in data_np.shape[1:])
    input_rank = np.asarray(images).ndim
    fp = fingerprint(config.trajectory_dict(), data_np, labels_np, num_classes, world)

    # --- model, EMA, optimizers: built identically on every rank from the same seed ---
    seed_everything(config.seed)
    model = build_model(config, shape, num_classes).to(dev)
    use_channels_last = dev.type == "cuda" and config.channels_last and model.uses_conv
    if use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, config.ema_decay)
    optimizers = model.configure_optimizers(config.resolved_lr())
    dtype = amp_dtype(config, dev)
    # Loss scaling is only needed for fp16 (bf16 has fp32's exponent range); disabled scalers are no-ops.
    scalers = {k: torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16) for k in optimizers}
    sampler = ShardedSampler(len(data_np), config.batch_size, config.seed, rank, world, dev)
    # Every rank draws different noise / augmentations / timesteps, so re-seed after the (shared) init.
    torch.manual_seed(derived_seed(config.seed, rank, 1))

    step, history, prior_seconds, resumed_from = 0, [], 0.0, None
    ckpt = _resumable_checkpoint(ckpt_path, fp, dev, say)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        for k, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][k])
            scalers[k].load_state_dict(ckpt["scalers"][k])
        sampler.load_state_dict(ckpt["sampler"])
        restore_rng(ckpt["rng"][rank], dev)
        step = resumed_from = int(ckpt["step"])
        history, prior_seconds = list(ckpt["history"]), float(ckpt["train_seconds"])
        say(f"[{config.family}] resuming from step {step} in {ckpt_path}")
        del ckpt
    elif world > 1:
        for t in list(model.parameters()) + list(model.buffers()):  # belt and braces: start from rank 0's weights
            dist.broadcast(t.data, src=0)
        ema = EMA(model, config.ema_decay)

    data = torch.from_numpy(data_np).to(dev)
    targets = torch.from_numpy(labels_np).to(dev)
    if use_channels_last:
        data = data.contiguous(memory_format=torch.channels_last)
    opt_params = {k: [p for g in o.param_groups for p in g["params"]] for k, o in optimizers.items()}

    def update(name: str, loss: torch.Tensor) -> None:
        opt, scaler = optimizers[name], scalers[name]
        scaler.scale(loss).backward()
        if world > 1:
            average_gradients(opt_params[name], world)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def save(finished: bool, seconds: float) -> None:
        # Every rank's RNG, so that each resumes its own stream, and every rank's weight digest, so that a
        # checkpoint proves the ranks were still bit-identical (they must be: same init, same averaged grads).
        mine = {"rng": capture_rng(dev), "digest": state_digest(model.state_dict())}
        gathered = [None] * world
        if world > 1:
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        if dinfo.is_main:
            atomic_save(
                {
                    "format": 1,
                    "family": config.family,
                    "config": config.model_dump(mode="json"),
                    "fingerprint": fp,
                    "shape": list(shape),
                    "num_classes": num_classes,
                    "input_rank": input_rank,
                    "world_size": world,
                    "step": step,
                    "finished": finished,
                    "train_seconds": seconds,
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "scalers": {k: s.state_dict() for k, s in scalers.items()},
                    "sampler": sampler.state_dict(),
                    "rng": [g["rng"] for g in gathered],
                    "rank_digests": [g["digest"] for g in gathered],
                    "history": history,
                },
                ckpt_path,
            )
        if world > 1:
            dist.barrier()

    def out_of_time(elapsed: float) -> bool:
        stop = config.max_seconds is not None and prior_seconds + elapsed >= config.max_seconds
        if world > 1 and config.max_seconds is not None:  # ranks must agree, or one waits forever in all_reduce
            flag = torch.tensor([int(stop)], device=dev)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    model.train()
    start_step, t0 = step, time.perf_counter()
    t_log, s_log = t0, step
    losses: dict[str, torch.Tensor] = {}
    say(f"[{config.family}] training {shape} x {len(data_np)} images, {num_classes} classes on {dev} "
        f"(world {world}, amp {dtype}), steps {step}->{config.max_steps}, budget {config.max_seconds}s")
    while step < config.max_steps and not out_of_time(time.perf_counter() - t0):
        idx = sampler.next()
        x = data[idx].float().div_(127.5).sub_(1.0)
        losses = model.train_step(x, targets[idx], update, autocast)
        ema.update(step)
        step += 1

        if step % config.log_every == 0:
            history.append({"step": step, **{k: float(v) for k, v in losses.items()}})
            now = time.perf_counter()
            rate = (step - s_log) / max(now - t_log, 1e-9)
            t_log, s_log = now, step
            say(f"[{config.family}] step {step} " + " ".join(f"{k}={v:.4f}" for k, v in history[-1].items() if k != "step")
                + f" | {rate:.1f} steps/s")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
            save(finished=False, seconds=prior_seconds + time.perf_counter() - t0)
        if config.sample_every and step % config.sample_every == 0 and dinfo.is_main:
            (run_dir / "samples").mkdir(exist_ok=True)
            png = sample_grid(ema, num_classes, config.grid_per_class, config.seed, dev, input_rank)
            (run_dir / "samples" / f"step_{step:07d}.png").write_bytes(png)

    seconds = time.perf_counter() - t0
    if losses and (not history or history[-1]["step"] != step):
        history.append({"step": step, **{k: float(v) for k, v in losses.items()}})
    save(finished=True, seconds=prior_seconds + seconds)
    rate = (step - start_step) / max(seconds, 1e-9)
    say(f"[{config.family}] finished at step {step} after {seconds:.1f}s ({rate:.1f} steps/s) -> {ckpt_path}")

    grid_png = curve_png = b""
    if dinfo.is_main:
        grid_png = sample_grid(ema, num_classes, config.grid_per_class, config.seed, dev, input_rank)
        curve_png = loss_curve(history, config.family) if history else b""
    if dinfo.owns_group:
        dist.destroy_process_group()
    return TrainResult(
        checkpoint_path=ckpt_path,
        steps=step,
        seconds=seconds,
        steps_per_second=rate,
        final_losses={k: v for k, v in history[-1].items() if k != "step"} if history else {},
        history=history,
        resumed_from_step=resumed_from,
        sample_grid_png=grid_png,
        loss_curve_png=curve_png,
    )


def _resumable_checkpoint(path: Path, fp: str, dev: torch.device, say: Callable[[str], None]) -> dict | None:
    """The checkpoint in run_dir if it belongs to an unfinished run of this exact config + data, else None."""
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path, map_location=dev)
    except Exception as exc:  # an unreadable file is not a run we can continue; start over and say so
        say(f"ignoring unreadable checkpoint {path}: {exc!r}")
        return None
    if ckpt.get("fingerprint") != fp:
        say(f"ignoring {path}: it belongs to a different config or data set; starting a new run")
        return None
    if ckpt.get("finished"):
        say(f"{path} is a finished run of this config; starting a new run")
        return None
    return ckpt


# ----------------------------------------------------------------------------------------------------------------
# Command line (works under torchrun too)


def load_images(spec: str) -> tuple[np.ndarray, np.ndarray, int]:
    """"digits" (scikit-learn's 8x8 digits) or a .npz file with uint8 `images` and int `labels`."""
    if spec == "digits":
        from synthdata.datasets import load_digits_uint8

        images, labels, names = load_digits_uint8()
        return images, labels, len(names)
    with np.load(spec) as f:
        images, labels = f["images"], f["labels"]
    return images, labels, int(labels.max()) + 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits", help='"digits" or an .npz with images (uint8) and labels')
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", default="{}", help="TrainConfig fields as JSON, e.g. '{\"family\": \"vae\"}'")
    args = p.parse_args(argv)
    images, labels, num_classes = load_images(args.data)
    config = TrainConfig.model_validate(json.loads(args.config))
    result = train_generator(images, labels, num_classes, config, args.device, args.run_dir, log=print)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({"checkpoint": str(result.checkpoint_path), "steps": result.steps,
                          "steps_per_second": round(result.steps_per_second, 2), "final_losses": result.final_losses,
                          "resumed_from_step": result.resumed_from_step}))


if __name__ == "__main__":
    main()
