"""Train a class-conditional generator (GAN, VAE or diffusion) on an in-memory uint8 image set.

Read `train_generator` top to bottom: set up (distributed, seeds, model, EMA, optimizers), maybe resume from
run_dir/checkpoint.pt, then the loop - sample a batch, let the model take its step, update the EMA, log,
checkpoint - until the step or time budget runs out; finally write the finished checkpoint and render pictures.

Determinism: with a step budget (max_seconds=None) a run is a pure function of (config, data, world size,
machine): a run that is killed and resumed any number of times ends with bit-identical weights to one that was
never interrupted. With a time budget the stopping step depends on machine speed and load, so only the
trajectory up to the step where it stopped is reproducible.

Distributed: launch the same code with torchrun (see distributed.py). `batch_size` is the global batch (each rank
takes batch_size // world_size), gradients are averaged across ranks after every backward, and only rank 0
writes checkpoints, sample grids and logs. From the command line: `python -m synthdata.training --help`.
"""

from __future__ import annotations

import contextlib
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

from synthdata.models import MODEL_FAMILIES, DiffusionConfig, GANConfig, VAEConfig, build_model
from synthdata.training.checkpoint import atomic_save, capture_rng, fingerprint, load_checkpoint, restore_rng, state_digest
from synthdata.training.distributed import ShardedSampler, average_gradients, setup_distributed
from synthdata.training.ema import EMA
from synthdata.training.figures import loss_curve, sample_grid
from synthdata.training.tensors import to_nchw

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

    def model_args(self, shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
        """The model's constructor arguments as plain data (see synthdata.models.build_model); every checkpoint
        stores them, so sampling needs no TrainConfig."""
        return {"family": self.family, "shape": list(shape), "num_classes": num_classes,
                "config": self.family_config().model_dump(mode="json")}


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
    model_args = config.model_args(shape, num_classes)
    model = build_model(model_args).to(dev)
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
                    "model_args": model_args,
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
            png = sample_grid(ema.model, num_classes, config.grid_per_class, config.seed, dev, input_rank)
            (run_dir / "samples" / f"step_{step:07d}.png").write_bytes(png)

    seconds = time.perf_counter() - t0
    if losses and (not history or history[-1]["step"] != step):
        history.append({"step": step, **{k: float(v) for k, v in losses.items()}})
    save(finished=True, seconds=prior_seconds + seconds)
    rate = (step - start_step) / max(seconds, 1e-9)
    say(f"[{config.family}] finished at step {step} after {seconds:.1f}s ({rate:.1f} steps/s) -> {ckpt_path}")

    grid_png = curve_png = b""
    if dinfo.is_main:
        grid_png = sample_grid(ema.model, num_classes, config.grid_per_class, config.seed, dev, input_rank)
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


# ----------------------------------------------------------------------------------------------------------------
# Resume, AMP, seeds


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
