"""uint8 images <-> model tensors, shared by the training loop and the sampler.

Outside the models images are uint8, (N, H, W) or (N, H, W, C); inside they are float (N, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch


def to_nchw(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    return np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))


def to_uint8(x: torch.Tensor, input_rank: int) -> np.ndarray:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, H, W, C), or (N, H, W) if the training images had no channel axis."""
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return arr[..., 0] if input_rank == 3 else arr
