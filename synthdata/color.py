"""Luma: the one definition of grey that hashing, near-duplicate confirmation and augmentation share.

ITU-R 601-2 weights, as Pillow's ``convert("L")`` uses them. ``rgb_to_l`` reproduces Pillow's 16-bit fixed-point
arithmetic exactly, so a hash computed from an array equals one computed from the decoded image.
"""

from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_l(rgb: np.ndarray) -> np.ndarray:
    """Pillow's RGB->L conversion (ITU-R 601-2 luma in 16-bit fixed point) on (..., 3) uint8 arrays."""
    acc = rgb[..., 0] * np.uint32(19595)  # uint32 scalars: promote without a full uint32 copy of the input
    acc += rgb[..., 1] * np.uint32(38470)
    acc += rgb[..., 2] * np.uint32(7471)
    acc += np.uint32(0x8000)
    acc >>= np.uint32(16)
    return acc.astype(np.uint8)


def luma8(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luma of an (H, W) or (H, W, 3|4) uint8 image, as Pillow computes it."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = rgb_to_l(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))
    return np.ascontiguousarray(arr, dtype=np.uint8)


def luma_float(image: np.ndarray) -> np.ndarray:
    """float32 (H, W) luma of an (H, W) or (H, W, 3|4) image, unrounded."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32) @ np.array(LUMA_WEIGHTS, dtype=np.float32)
    return arr.astype(np.float32)
