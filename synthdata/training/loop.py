"""Train a class-conditional generator (GAN, VAE or diffusion) on an in-memory uint8 image set.

Read `train_generator` top to bottom: set up (distributed, the existing checkpoint, the plan that sizes the model
for this device and budget - plan.py -, seeds, model, EMA, optimizers), maybe resume from run_dir/checkpoint.pt,
then the loop - sample a batch, let the model take its step, update the EMA, log, probe quality on the val split
now and then, checkpoint - until the step or time budget runs out; finally write the finished checkpoint and
render pictures.

Determinism: with a step budget (max_seconds=None) a run is a pure function of (config, data, world size,
machine): a run that is killed and resumed any number of times ends with bit-identical weights to one that was
never interrupted. With a time budget the plan's warm-up and the stopping step depend on machine speed and
load; a resumed run reuses the plan of the run it continues, so the trajectory up to where it stopped is
reproducible. Quality probes draw from their own seeded generators and never touch the training RNG.

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
from synthdata.training.checkpoint import (
    FORMAT_VERSION,
    atomic_save,
    capture_rng,
    fingerprint,
    read_run_checkpoint,
    restore_rng,
    state_digest,
)
from synthdata.training.distributed import ShardedSampler, average_gradients, setup_distributed
from synthdata.training.ema import EMA
from synthdata.training.figures import loss_curve, loss_names, sample_grid, training_curves
from synthdata.training.plan import PlanConfig, TrainingPlan, apply_plan, explicit_fields, plan_training
from synthdata.training.quality import QualityProbe
from synthdata.training.tensors import to_nchw

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that change how long / how chattily a run goes, not what any given step computes.
BUDGET_FIELDS = {"max_steps", "max_seconds", "checkpoint_every", "sample_every", "log_every", "eval_every",
                 "eval_per_class"}
# Quality probes per run when eval_every is None (auto): enough points for a curve, few enough to stay cheap.
AUTO_PROBES = 6


class TrainConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    family: Literal["gan", "vae", "diffusion"] = "gan"
    max_steps: int = pydantic.Field(20000, ge=1)
    max_seconds: float | None = 60.0  # time budget (warm-up included); whichever of steps/time runs out first
    batch_size: int = pydantic.Field(128, ge=1)  # global batch (split across DDP ranks); planned unless set
    lr: float | None = None  # None: the family's default (gan 2e-4, vae 1e-3, diffusion 1e-3)
    seed: int = 0
    ema_decay: float = 0.999
    checkpoint_every: int = 500  # steps; 0 = only the final checkpoint
    sample_every: int = 1000  # steps; writes run_dir/samples/step_XXXXXXX.png (rank 0); 0 = never
    log_every: int = 50  # steps between history rows / log lines
    eval_every: int | None = None  # steps between quality probes on the val split; None: ~6 per run; 0: never
    eval_per_class: int = pydantic.Field(20, ge=1)  # samples (and real train images) per class in a probe
    grid_per_class: int = 10  # columns of the returned sample grid (one row per class)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA only; CPU always trains in fp32
    channels_last: bool = True  # CUDA conv models only
    gan: GANConfig = GANConfig()
    vae: VAEConfig = VAEConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    plan: PlanConfig = PlanConfig()  # compute-aware sizing (synthdata/training/plan.py)

    def family_config(self) -> pydantic.BaseModel:
        return getattr(self, self.family)

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else MODEL_FAMILIES[self.family].default_lr

    def trajectory_dict(self) -> dict[str, Any]:
        """The part of the config that determines what each step computes (used in the run fingerprint)."""
        return self.model_dump(mode="json", exclude=BUDGET_FIELDS)

    def request_dict(self) -> dict[str, Any]:
        """The trajectory as asked for, before planning: which plannable fields were set explicitly matters."""
        return {**self.trajectory_dict(), "explicit": explicit_fields(self)}

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
    plan: dict[str, Any]  # TrainingPlan.record(): what was chosen, why, measured steps/s, warnings
    config: TrainConfig  # the config the run trained with (the plan applied)
    probes: list[dict[str, float]]  # quality probes on the val split: step, seconds, probe_tstr/trtr/ratio
    events: list[dict[str, Any]]  # what happened to the run folder's checkpoint (unreadable, resumed, ...)
    warnings: list[str]  # the plan's warnings and any unreadable-checkpoint warning, also logged
    eval_seconds: float  # this call's seconds spent in quality probes (outside the time budget)
    curves_png: bytes  # losses, steps/s and the quality probe against step (b"" on ranks other than 0)


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
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    warn: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `config.family` on uint8 `images` with int `labels`; `val_images`/`val_labels` (optional) feed the
    quality probes. `log` gets progress lines, `warn` (default: `log`) the warnings."""
    dinfo = setup_distributed(device)
    dev, rank, world = dinfo.device, dinfo.rank, dinfo.world
    say = (log or (lambda _msg: None)) if dinfo.is_main else (lambda _msg: None)
    shout = (warn or say) if dinfo.is_main else (lambda _msg: None)
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
    data = torch.from_numpy(data_np).to(dev)
    targets = torch.from_numpy(labels_np).to(dev)

    # --- the run folder's checkpoint, then the plan: reused when resuming, so the trajectory never changes ---
    events: list[dict[str, Any]] = []
    warnings: list[str] = []
    existing, unreadable = read_run_checkpoint(ckpt_path, dev, move_aside=dinfo.is_main)
    if unreadable is not None:
        events.append(unreadable)
        warnings.append(f"checkpoint {ckpt_path} could not be loaded ({unreadable['error']}); moved aside to "
                        f"{unreadable['moved_to']}; training starts from step 0")
        shout(f"[{config.family}] WARNING: {warnings[-1]}")
    request = fingerprint(config.request_dict(), data_np, labels_np, num_classes, world)
    plan = _plan(config, existing, request, data, targets, num_classes, dev, dinfo.is_main, world, say)
    say(f"[{config.family}] {plan.summary()}")
    for w in plan.warnings:
        warnings.append(w)
        shout(f"[{config.family}] WARNING: {w}")
    config = apply_plan(config, plan)
    fp = fingerprint(config.trajectory_dict(), data_np, labels_np, num_classes, world)

    # --- model, EMA, optimizers: built identically on every rank from the same seed ---
    seed_everything(config.seed)
    model_args = config.model_args(shape, num_classes)
    model = build_model(model_args).to(dev)
    use_channels_last = dev.type == "cuda" and config.channels_last and model.uses_conv
    if use_channels_last:
        model = model.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    ema = EMA(model, config.ema_decay)
    optimizers = model.configure_optimizers(config.resolved_lr())
    dtype = amp_dtype(config, dev)
    # Loss scaling is only needed for fp16 (bf16 has fp32's exponent range); disabled scalers are no-ops.
    scalers = {k: torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16) for k in optimizers}
    sampler = ShardedSampler(len(data_np), config.batch_size, config.seed, rank, world, dev)
    # Every rank draws different noise / augmentations / timesteps, so re-seed after the (shared) init.
    torch.manual_seed(derived_seed(config.seed, rank, 1))

    step, history, probes, prior_seconds, resumed_from = 0, [], [], 0.0, None
    ckpt = _resumable(existing, ckpt_path, fp, say)
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
        probes, events = list(ckpt.get("probes", [])), list(ckpt.get("events", [])) + events
        events.append({"event": "resumed", "step": step})
        say(f"[{config.family}] resuming from step {step} in {ckpt_path}")
    elif world > 1:
        for t in list(model.parameters()) + list(model.buffers()):  # belt and braces: start from rank 0's weights
            dist.broadcast(t.data, src=0)
        ema = EMA(model, config.ema_decay)
    del existing, ckpt

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
                    "format": FORMAT_VERSION,
                    "family": config.family,
                    "config": config.model_dump(mode="json"),
                    "model_args": model_args,
                    "plan": plan.record(),
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
                    "probes": probes,
                    "events": events,
                },
                ckpt_path,
            )
        if world > 1:
            dist.barrier()

    # The time budget covers the plan's warm-up (once, however often the run resumes) and the training steps;
    # quality probes are reporting, so their seconds are kept out of it.
    spent_before = prior_seconds + plan.warmup_seconds

    def out_of_time(elapsed: float) -> bool:
        stop = config.max_seconds is not None and spent_before + elapsed >= config.max_seconds
        if world > 1 and config.max_seconds is not None:  # ranks must agree, or one waits forever in all_reduce
            flag = torch.tensor([int(stop)], device=dev)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    probe = None
    if dinfo.is_main and val_images is not None and val_labels is not None and config.eval_every != 0:
        probe = QualityProbe(data_np, labels_np, to_nchw(val_images), np.asarray(val_labels).astype(np.int64),
                             num_classes, config.eval_per_class, config.seed)
    due = _probe_schedule(config, plan)
    eval_seconds = 0.0

    def run_probe(train_seconds: float) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        row = {"step": step, "seconds": round(train_seconds, 2), **probe(ema.model, dev)}
        eval_seconds += time.perf_counter() - t
        probes.append(row)
        say(f"[{config.family}] probe at step {step}: TSTR/TRTR on val ~{row['probe_ratio']:.3f}")

    model.train()
    start_step, t0 = step, time.perf_counter()
    t_log, s_log = t0, step
    last_probe = probes[-1]["seconds"] if probes else 0.0
    losses: dict[str, torch.Tensor] = {}
    say(f"[{config.family}] training {shape} x {len(data_np)} images, {num_classes} classes on {dev} "
        f"(world {world}, amp {dtype}), steps {step}->{config.max_steps}, budget {config.max_seconds}s")
    while step < config.max_steps and not out_of_time(time.perf_counter() - t0 - eval_seconds):
        idx = sampler.next()
        x = data[idx].float().div_(127.5).sub_(1.0)
        losses = model.train_step(x, targets[idx], update, autocast)
        ema.update(step)
        step += 1

        if step % config.log_every == 0:
            now = time.perf_counter()
            rate = (step - s_log) / max(now - t_log, 1e-9)
            t_log, s_log = now, step
            history.append({"step": step, **{k: float(v) for k, v in losses.items()}, "steps_per_second": round(rate, 3)})
            say(f"[{config.family}] step {step} "
                + " ".join(f"{k}={history[-1][k]:.4f}" for k in loss_names(history[-1]))
                + f" | {rate:.1f} steps/s")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
            save(finished=False, seconds=prior_seconds + time.perf_counter() - t0 - eval_seconds)
        if config.sample_every and step % config.sample_every == 0 and dinfo.is_main:
            (run_dir / "samples").mkdir(exist_ok=True)
            png = sample_grid(ema.model, num_classes, config.grid_per_class, config.seed, dev, input_rank)
            (run_dir / "samples" / f"step_{step:07d}.png").write_bytes(png)
        if probe is not None and step < config.max_steps:
            trained = prior_seconds + time.perf_counter() - t0 - eval_seconds
            if due(step, trained, last_probe):
                run_probe(trained)
                last_probe = trained
                t_log, s_log = time.perf_counter(), step  # the probe's time is not training speed

    seconds = time.perf_counter() - t0 - eval_seconds
    if losses and (not history or history[-1]["step"] != step):
        rate = (step - s_log) / max(time.perf_counter() - t_log, 1e-9)
        history.append({"step": step, **{k: float(v) for k, v in losses.items()}, "steps_per_second": round(rate, 3)})
    if probe is not None and (not probes or probes[-1]["step"] != step):
        run_probe(prior_seconds + seconds)
    save(finished=True, seconds=prior_seconds + seconds)
    rate = (step - start_step) / max(seconds, 1e-9)
    say(f"[{config.family}] finished at step {step} after {seconds:.1f}s ({rate:.1f} steps/s) -> {ckpt_path}")

    grid_png = curve_png = curves_png = b""
    if dinfo.is_main:
        grid_png = sample_grid(ema.model, num_classes, config.grid_per_class, config.seed, dev, input_rank)
        curve_png = loss_curve(history, config.family) if history else b""
        curves_png = training_curves(history, probes, config.family) if history else b""
    if dinfo.owns_group:
        dist.destroy_process_group()
    return TrainResult(
        checkpoint_path=ckpt_path,
        steps=step,
        seconds=seconds,
        steps_per_second=rate,
        final_losses={k: history[-1][k] for k in loss_names(history[-1])} if history else {},
        history=history,
        resumed_from_step=resumed_from,
        sample_grid_png=grid_png,
        loss_curve_png=curve_png,
        plan=plan.record(),
        config=config,
        probes=probes,
        events=events,
        warnings=warnings,
        eval_seconds=eval_seconds,
        curves_png=curves_png,
    )


# ----------------------------------------------------------------------------------------------------------------
# Plan, resume, probes, AMP, seeds


def _plan(
    config: TrainConfig,
    existing: dict | None,
    request: str,
    data: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    dev: torch.device,
    is_main: bool,
    world: int,
    say: Callable[[str], None],
) -> TrainingPlan:
    """The plan of the unfinished run being continued (same request), else a new one; rank 0's on every rank."""
    record = None
    if existing is not None and not existing.get("finished") and existing.get("plan", {}).get("request") == request:
        record = {**existing["plan"], "reused": True}
    elif is_main:
        record = plan_training(config, data, targets, num_classes, amp_dtype(config, dev), request, say).record()
    if world > 1:  # a warm-up's timing differs per rank: every rank must train what rank 0 chose
        box = [record]
        dist.broadcast_object_list(box, src=0)
        record = box[0]
    return TrainingPlan.from_record(record)


def _resumable(ckpt: dict | None, path: Path, fp: str, say: Callable[[str], None]) -> dict | None:
    """The checkpoint if it belongs to an unfinished run of this exact (planned) config + data, else None."""
    if ckpt is None:
        return None
    if ckpt.get("fingerprint") != fp:
        say(f"ignoring {path}: it belongs to a different config or data set; starting a new run")
        return None
    if ckpt.get("finished"):
        say(f"{path} is a finished run of this config; starting a new run")
        return None
    return ckpt


def _probe_schedule(config: TrainConfig, plan: TrainingPlan) -> Callable[[int, float, float], bool]:
    """due(step, trained_seconds, seconds_at_last_probe): every eval_every steps, or (auto) ~AUTO_PROBES per run:
    by steps under a step budget, by training seconds under a time budget (the step count is not known ahead)."""
    if config.eval_every:
        every = config.eval_every
        return lambda step, _t, _last: step % every == 0
    if config.max_seconds is None:
        every = max(1, config.max_steps // AUTO_PROBES)
        return lambda step, _t, _last: step % every == 0
    interval = (config.max_seconds - plan.warmup_seconds) / AUTO_PROBES
    return lambda _step, t, last: t - last >= interval


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
