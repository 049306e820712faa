"""Compute-aware defaults: pick a generator's architecture, width and batch size for the machine it trains on.

A family's network is only as good as the number of steps it gets to take. Library defaults sized for a GPU
(conv nets, width 64, batch 128) take 10 steps in a minute on a 2-core CPU and learn nothing; a 200k-parameter MLP
takes thousands there. So under a time budget `plan_training` runs a short timed warm-up: a few real training
steps of each candidate of the family's ladder (smallest first) on the actual device and data, and keeps the
last candidate whose measured steps/s reaches the family's target number of steps within the budget. The
warm-up's own seconds count against the budget.

Candidates are ordered by what they give with enough steps: MLPs, then conv nets of growing width; the last one
is the reference (the library defaults), which is what a step-only budget gets (no time to fit into) and what a
GPU usually reaches. Every part can be set in config: an explicitly given `batch_size`, `<family>.arch` or
`<family>.width` wins over the plan (which then says "overridden"), and `plan.auto=false` turns planning off.

The plan is a plain record (`TrainingPlan.record()`): it goes to the run log, the checkpoint and the asset's
metadata, and a resumed run reuses the record of the run it resumes instead of planning again (the trajectory
must not change halfway).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic
import torch

from synthdata.models import build_model
from synthdata.models.blocks import use_mlp
from synthdata.training.ema import EMA

if TYPE_CHECKING:
    from synthdata.training.loop import TrainConfig

# Steps a family needs before a larger model pays more than more steps (measured on Fashion-MNIST 28x28, batch
# 64, docs/training.md "Compute-aware defaults"): a VAE of MLP width 64 given 2,190 steps reached TSTR/TRTR 0.944
# where width 128 given 1,033 steps reached 0.904 and width 32 given 746 steps 0.911; the GAN's and the diffusion
# model's val probes were still rising at 500-1,000 steps.
TARGET_STEPS: dict[str, int] = {"gan": 3000, "vae": 2500, "diffusion": 3000}

# What a family reached on a 2-core CPU at 28x28 and above within 5 minutes (families benchmark). Planning warns
# with this when it cannot give the family its target steps on a CPU: the user sees it instead of a silent run.
CPU_NOTES: dict[str, str] = {
    "gan": "on 2 CPU cores a 28x28 GAN reached TSTR/TRTR 0.89 in 60 s with the machine to itself but 0.65 in 60 s "
    "and 0.83 in 5 minutes beside other jobs (families benchmark, docs/training.md), where the VAE reached 0.92 "
    "either way: prefer `vae` on a shared CPU, or train the GAN on a GPU",
}


class PlanConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    auto: bool = True  # False: no planning; anything not set keeps the library default (the reference size)
    target_steps: int | None = pydantic.Field(None, ge=1)  # None: the family's TARGET_STEPS
    warmup_seconds: float = pydantic.Field(6.0, ge=0.0)  # cap on the timed warm-up (counted in max_seconds)
    timed_steps: int = pydantic.Field(3, ge=1)  # timed steps per candidate, after one untimed step


@dataclass(frozen=True)
class Candidate:
    arch: str  # "mlp" or "conv"
    width: int
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.arch}-w{self.width}-b{self.batch_size}"


def ladder(shape: tuple[int, int, int]) -> list[Candidate]:
    """The candidates for an image shape, cheapest / least capable first; the last is the reference."""
    if use_mlp("auto", shape):  # tiny images: MLPs all the way (blocks.MLP_MAX_PIXELS)
        return [Candidate("mlp", 16, 64), Candidate("mlp", 32, 128), Candidate("mlp", 64, 128)]
    return [
        Candidate("mlp", 32, 64),
        Candidate("mlp", 64, 64),
        Candidate("mlp", 128, 64),
        Candidate("conv", 8, 64),
        Candidate("conv", 16, 64),
        Candidate("conv", 32, 128),
        Candidate("conv", 64, 128),
    ]


@dataclass
class TrainingPlan:
    """What was chosen for a run and why (a plain, JSON-able record once `record()`ed)."""

    family: str
    device: str
    shape: list[int]
    n_images: int
    num_classes: int
    budget_seconds: float | None
    budget_steps: int
    target_steps: int
    source: str  # planned | overridden | reference (step budget) | off; a resumed run keeps it (see `reused`)
    arch: str
    width: int
    batch_size: int
    reason: str
    overridden: list[str] = field(default_factory=list)
    measured: list[dict[str, Any]] = field(default_factory=list)
    steps_per_second: float | None = None  # the chosen candidate's, measured in the warm-up
    predicted_steps: int | None = None
    warmup_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    request: str = ""  # fingerprint of the request (config as asked + data) this plan answers
    reused: bool = False  # True in a resumed run: the plan of the run it continues, not planned again

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainingPlan:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    def summary(self) -> str:
        reused = ", reused from the checkpoint it resumes" if self.reused else ""
        return f"plan ({self.source}{reused}): {self.arch} width {self.width} batch {self.batch_size}. {self.reason}"


def explicit_fields(config: TrainConfig) -> list[str]:
    """The plannable fields the config sets explicitly (pydantic's fields_set): these win over the plan."""
    out = ["batch_size"] if "batch_size" in config.model_fields_set else []
    family_cfg = config.family_config()
    if config.family in config.model_fields_set:
        out += [f"{config.family}.{f}" for f in ("arch", "width") if f in family_cfg.model_fields_set]
    return out


def apply_plan(config: TrainConfig, plan: TrainingPlan) -> TrainConfig:
    """The config the run trains with. Only a warm-up choice changes it; the other sources keep it as given."""
    if plan.source != "planned":
        return config
    return _with(config, Candidate(plan.arch, plan.width, plan.batch_size))


def _with(config: TrainConfig, cand: Candidate) -> TrainConfig:
    family_cfg = config.family_config().model_copy(update={"arch": cand.arch, "width": cand.width})
    return config.model_copy(update={"batch_size": cand.batch_size, config.family: family_cfg})


def plan_training(
    config: TrainConfig,
    data: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    amp: torch.dtype | None,
    request: str,
    log: Callable[[str], None],
) -> TrainingPlan:
    """Choose (arch, width, batch_size) for `config` on `data`'s device. `data`: uint8 (N, C, H, W) on the device."""
    shape = tuple(int(s) for s in data.shape[1:])
    family, fam_cfg = config.family, config.family_config()
    explicit = explicit_fields(config)
    target = min(config.plan.target_steps or TARGET_STEPS[family], config.max_steps)
    reference_arch = "mlp" if use_mlp(fam_cfg.arch, shape) else "conv"
    base = dict(
        family=family, device=str(data.device), shape=list(shape), n_images=len(data), num_classes=num_classes,
        budget_seconds=config.max_seconds, budget_steps=config.max_steps, target_steps=target,
        arch=reference_arch, width=fam_cfg.width, batch_size=config.batch_size, overridden=explicit, request=request,
    )
    candidates = _allowed(ladder(shape), config, explicit)
    if not config.plan.auto:
        plan = TrainingPlan(source="off", reason="planning is off (plan.auto=false): the config as given", **base)
    elif len(candidates) <= 1:
        plan = TrainingPlan(source="overridden", reason=f"set in config: {', '.join(explicit)}", **base)
    elif config.max_seconds is None:
        plan = TrainingPlan(source="reference", reason="a step budget only: nothing to fit into, so the reference "
                            "size (the library defaults)", **base)
    else:
        plan = _warm_up(config, candidates, data, labels, num_classes, amp, target, base, log)
    plan.warnings += _warnings(plan, config)
    return plan


def _allowed(candidates: list[Candidate], config: TrainConfig, explicit: list[str]) -> list[Candidate]:
    """The ladder with the explicitly set fields forced (duplicates dropped, order kept)."""
    fam_cfg, out = config.family_config(), []
    forced_arch = f"{config.family}.arch" in explicit and fam_cfg.arch != "auto"
    for c in candidates:
        if forced_arch and fam_cfg.arch != c.arch:
            continue
        c = Candidate(
            c.arch,
            fam_cfg.width if f"{config.family}.width" in explicit else c.width,
            config.batch_size if "batch_size" in explicit else c.batch_size,
        )
        if c not in out:
            out.append(c)
    return out


def _warm_up(
    config: TrainConfig,
    candidates: list[Candidate],
    data: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    amp: torch.dtype | None,
    target: int,
    base: dict[str, Any],
    log: Callable[[str], None],
) -> TrainingPlan:
    budget = float(config.max_seconds)
    # The first optimizer a process builds imports torch's compiler stack (~5 s on a loaded 2-core box). The loop
    # would pay that anyway; paid here, before the clock starts, it is not mistaken for the warm-up's cost.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    # Seconds left for training once the warm-up is spent (the warm-up counts against the budget).
    available = max(budget - config.plan.warmup_seconds, 0.5 * budget)
    t0 = time.perf_counter()
    measured: list[dict[str, Any]] = []
    chosen, chosen_rate = candidates[0], None
    for i, cand in enumerate(candidates):
        if i and time.perf_counter() - t0 > config.plan.warmup_seconds:
            measured.append({"candidate": cand.label, "skipped": "warm-up time cap reached"})
            break
        rate = _steps_per_second(config, cand, data, labels, num_classes, amp, need=target / available)
        reaches = rate * available >= target
        measured.append({"candidate": cand.label, "steps_per_second": round(rate, 2),
                         "predicted_steps": int(rate * available), "reaches_target": bool(reaches)})
        log(f"[{config.family}] warm-up {cand.label}: {rate:.2f} steps/s -> ~{int(rate * available)} steps "
            f"in {available:.0f}s (target {target})")
        if not reaches and i:
            break
        chosen, chosen_rate = cand, rate
        if not reaches:  # even the smallest misses the target: it is still the best bet
            break
    warmup = time.perf_counter() - t0
    predicted = int(chosen_rate * max(budget - warmup, 0.0))
    best = measured[candidates.index(chosen)]
    if best["reaches_target"]:
        why = f"the largest candidate that reaches the {target}-step target"
        if chosen == candidates[-1]:
            why += " (the reference size)"
    else:
        why = f"the smallest candidate, and even it misses the {target}-step target"
    reason = (f"warm-up on {base['device']} ({warmup:.1f}s): {chosen.label} runs {chosen_rate:.1f} steps/s, "
              f"~{predicted} steps in the {budget:.0f}s budget: {why}")
    base = {**base, "arch": chosen.arch, "width": chosen.width, "batch_size": chosen.batch_size}
    return TrainingPlan(source="planned", reason=reason, measured=measured, steps_per_second=round(chosen_rate, 3),
                        predicted_steps=predicted, warmup_seconds=round(warmup, 3), **base)


def _steps_per_second(
    config: TrainConfig,
    cand: Candidate,
    data: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    amp: torch.dtype | None,
    need: float,
) -> float:
    """Median steps/s of `timed_steps` real training steps of `cand` (after one untimed step) on the data's device.

    The global RNG is forked, so the warm-up leaves no trace in the run that follows. A candidate whose first step
    already takes four times the time it may take per step is not timed further: it cannot reach the target.
    """
    dev = data.device
    shape = tuple(int(s) for s in data.shape[1:])
    trial = _with(config, cand)
    b = min(cand.batch_size, len(data))
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(0)
        model = build_model(trial.model_args(shape, num_classes)).to(dev)
        opts = model.configure_optimizers(trial.resolved_lr())
        ema = EMA(model, trial.ema_decay)  # the loop updates it every step: part of a step's cost

        def update(name: str, loss: torch.Tensor) -> None:
            loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)

        def autocast():
            return torch.autocast(dev.type, dtype=amp) if amp is not None else nullcontext()

        x = data[:b].float().div(127.5).sub(1.0)
        y = labels[:b]
        times: list[float] = []
        for i in range(config.plan.timed_steps + 1):
            start = time.perf_counter()
            model.train_step(x, y, update, autocast)
            ema.update(i)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
            if i == 0 and times[0] * need > 4.0:
                return 1.0 / times[0]
    return 1.0 / statistics.median(times[1:])


def _warnings(plan: TrainingPlan, config: TrainConfig) -> list[str]:
    out = []
    if plan.predicted_steps is not None and plan.predicted_steps < plan.target_steps:
        out.append(f"{plan.family} gets ~{plan.predicted_steps} of the {plan.target_steps} steps it needs in "
                   f"{plan.budget_seconds:.0f}s on this device: expect weak samples; raise max_seconds")
    on_cpu = plan.device.startswith("cpu")
    tiny = use_mlp("auto", tuple(plan.shape))
    budget = config.max_seconds
    if on_cpu and not tiny and plan.family in CPU_NOTES and (budget is None or budget <= 600):
        out.append(CPU_NOTES[plan.family])
    return out
