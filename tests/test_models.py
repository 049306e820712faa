"""Each generator family, in isolation: shapes, ranges, determinism, gradients - on real forward/backward passes."""

from __future__ import annotations

import contextlib

import pytest
import torch

from synthdata.models import MODEL_FAMILIES, ConditionalDDPM, DiffusionConfig, GenerativeModel
from synthdata.models.blocks import resolution_plan
from synthdata.models.diffaugment import cutout, diff_augment, translation
from synthdata.models.diffusion import alpha_bar_schedule

SHAPES = [(1, 8, 8), (3, 28, 28), (3, 64, 64)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(family: str, shape: tuple[int, int, int]) -> GenerativeModel:
    torch.manual_seed(0)
    if family == "diffusion":  # fewer DDIM steps keep the 64x64 U-Net test quick; the code path is the same
        return ConditionalDDPM(shape, 10, DiffusionConfig(sampling_steps=4, width=16))
    return MODEL_FAMILIES[family](shape, 10)


def test_registry_lists_three_families():
    assert set(MODEL_FAMILIES) == {"gan", "vae", "diffusion"}


def test_resolution_plan_adapts_depth_to_size():
    assert resolution_plan(8, 8) == ((4, 4), 1)
    assert resolution_plan(28, 28) == ((7, 7), 2)
    assert resolution_plan(64, 64) == ((4, 4), 4)
    assert resolution_plan(32, 48) == ((4, 6), 3)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
def test_train_step_and_sample(family: str, shape: tuple[int, int, int]):
    model = make(family, shape)
    opts = model.configure_optimizers(1e-3)
    before = {k: v.clone() for k, v in model.sampling_module().state_dict().items()}

    def update(name: str, loss: torch.Tensor) -> None:
        loss.backward()
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)

    x = torch.rand(4, *shape) * 2 - 1
    y = torch.tensor([0, 3, 7, 9])
    for _ in range(2):
        losses = model.train_step(x, y, update, contextlib.nullcontext)
    assert losses and all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    after = model.sampling_module().state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the sampling weights did not move"

    a = model.sample(y, torch.Generator().manual_seed(5))
    b = model.sample(y, torch.Generator().manual_seed(5))
    c = model.sample(y, torch.Generator().manual_seed(6))
    assert a.shape == (4, *shape) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_diffaugment_is_differentiable_and_shared_policy_shape():
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_()
    out = diff_augment(x, "color,translation,cutout")
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ""), x)


def test_translation_shifts_content_and_cutout_blanks_a_square():
    torch.manual_seed(0)
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3:5, 3:5] = 1.0  # a bright 2x2 blob in the middle
    moved = translation(x, ratio=0.125)  # shifts of -1..1 pixels
    assert torch.equal((moved == 1).sum(dim=(1, 2, 3)), torch.full((64,), 4))  # blob fully kept
    assert not torch.equal(moved, x.expand_as(moved))  # ...but not always in the same place
    ones = torch.ones(32, 1, 8, 8)
    holes = (cutout(ones, ratio=0.5) == 0).sum(dim=(1, 2, 3))
    assert holes.max() == 16 and holes.min() >= 4  # a 4x4 square, clipped at the borders


def test_cosine_schedule_runs_from_signal_to_noise():
    ab = alpha_bar_schedule(1000, "cosine")
    assert ab[0] > 0.999 and ab[-1] < 1e-4 and torch.all(ab[1:] < ab[:-1])
    lin = alpha_bar_schedule(1000, "linear")
    assert lin[0] > 0.999 and lin[-1] < 1e-4


def test_edm_preconditioning_gets_the_noisiest_steps_right_before_any_training():
    """At the last timestep x_t is almost pure noise, so eps ~ x_t. The preconditioned denoiser's skip gives that
    for free; plain epsilon prediction has to learn it (and an MLP narrower than the image cannot: it would have
    to pass 784 pixels through 256 units). Measured on an untrained 28x28 MLP denoiser."""
    torch.manual_seed(0)
    shape = (1, 28, 28)
    x0 = torch.rand(16, *shape) * 2 - 1
    noise = torch.randn(16, *shape)
    errors = {}
    for kind in ("edm", "eps"):
        torch.manual_seed(0)
        model = ConditionalDDPM(shape, 10, DiffusionConfig(arch="mlp", width=16, precondition=kind))
        t = torch.full((16,), model.cfg.timesteps - 1)
        ab = model.alpha_bar[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        with torch.no_grad():
            errors[kind] = float(((model.eps(xt, t, torch.zeros(16, dtype=torch.long)) - noise) ** 2).mean())
    assert errors["edm"] < 0.01 < 0.5 < errors["eps"], errors
