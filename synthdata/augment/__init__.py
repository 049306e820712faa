"""Declarative, seeded, batched image augmentation.

`AugmentPolicy` says what to do (a validated, YAML-able list of ops with probabilities and ranges);
`augment_batch` does it to a batch on the images' device, with every row reproducible from
(policy, seed, parent_id). See `synthdata.augment.engine` for how the seeding and batching work.
"""

from synthdata.augment.engine import (
    AugmentResult,
    augment_batch,
    draw_uniforms,
    noise_bank,
    row_seed,
    splitmix64_uniforms,
)
from synthdata.augment.policy import (
    KNOWN_OPS,
    SAMPLER_VERSION,
    Affine,
    AugmentPolicy,
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
)

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
    "noise_bank",
    "row_seed",
    "splitmix64_uniforms",
]
