"""Declarative, seeded, batched image augmentation.

`AugmentPolicy` says what to do (a validated, YAML-able list of ops with probabilities and ranges);
`augment_batch` does it to a batch on the images' device, with every row reproducible from
(policy, seed, parent_id); `synthdata.augment.dataset.augment_split` turns a whole split into stored PNGs
and rows with their lineage.

Modules: `policy` (the policy), `ops` (one class per op, and the registry), `seeding` (each row's uniforms),
`batch` (the batch state ops plan and apply against), `engine` (planning and running the steps),
`dataset` (a split in, rows and stored PNGs out).
"""

from synthdata.augment import engine
from synthdata.augment.engine import AugmentResult, augment_batch
from synthdata.augment.ops import (
    KNOWN_OPS,
    Affine,
    ColorJitter,
    Cutmix,
    GaussianBlur,
    GaussianNoise,
    HFlip,
    Mixup,
    RandomErasing,
    RandomResizedCrop,
    Rotate,
    VFlip,
    noise_bank,
)
from synthdata.augment.policy import AugmentPolicy
from synthdata.augment.seeding import SAMPLER_VERSION, draw_uniforms, row_seed, splitmix64_uniforms

__all__ = [
    "KNOWN_OPS",
    "SAMPLER_VERSION",
    "Affine",
    "AugmentPolicy",
    "AugmentResult",
    "ColorJitter",
    "Cutmix",
    "GaussianBlur",
    "GaussianNoise",
    "HFlip",
    "Mixup",
    "RandomErasing",
    "RandomResizedCrop",
    "Rotate",
    "VFlip",
    "augment_batch",
    "draw_uniforms",
    "engine",
    "noise_bank",
    "row_seed",
    "splitmix64_uniforms",
]
