"""Every augmentation op, one class each, and the registry the policy, the sampler and the engine read them from.

To add an op, write one class in the module of its stage (or a new module imported below): its `op` name,
its config fields, `draws`, `stage`, and `matrices` (geometric) or `step` (the others), decorated with
`@register`. The import order below is the order of `KNOWN_OPS`.
"""

# Registration order is the order of KNOWN_OPS and of the unknown-op message: keep these imports in it.
# isort: off
from synthdata.augment.ops.base import OPS, GeometricOp, Op, PixelOp, Stage, register
from synthdata.augment.ops.geometric import Affine, HFlip, RandomResizedCrop, Rotate, VFlip
from synthdata.augment.ops.color import ColorJitter
from synthdata.augment.ops.pixel import GaussianBlur, GaussianNoise, RandomErasing, noise_bank
from synthdata.augment.ops.mixing import Cutmix, Mixup

# isort: on

# Every op name a policy accepts, aliases included (`cutout`), in registration order.
KNOWN_OPS: tuple[str, ...] = tuple(OPS)

__all__ = [
    "KNOWN_OPS",
    "OPS",
    "Affine",
    "ColorJitter",
    "Cutmix",
    "GaussianBlur",
    "GaussianNoise",
    "GeometricOp",
    "HFlip",
    "Mixup",
    "Op",
    "PixelOp",
    "RandomErasing",
    "RandomResizedCrop",
    "Rotate",
    "Stage",
    "VFlip",
    "noise_bank",
    "register",
]
