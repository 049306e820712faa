"""The pipeline's own feature space: a small CNN classifier trained on the real train split.

Every fidelity, diversity and privacy metric is computed from this network's penultimate layer (as FID uses
Inception's pool layer), so nothing is downloaded and the space is fit to the data at hand. The same network,
trained fresh, is the CNN of the utility study (`train_cnn`).

The network adapts to the image size: two pooling stages for images of 16 px and up, one below (8x8 digits),
then an adaptive pool to 4x4, so 8x8, 25x25, 28x28 and 32x32 images all work. Training is seeded (weights and
batch order from one `torch.Generator`), stops early when val accuracy stops improving, and keeps the best
epoch's weights. A wall-clock budget (`max_seconds`) can stop it sooner: within the budget, a seed gives the
same network.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthdata.io.atomic import replacing

if TYPE_CHECKING:
    import torch

FEATURE_DIM = 128
# Two narrow conv blocks: 16/32 channels cost 2.2x the CPU time per epoch of 8/16 for the same Fashion-MNIST val
# accuracy after 6 epochs (0.85; docs/benchmarks.md), and the features only need to separate what a person would.
WIDTHS = (8, 16)
FORMAT_VERSION = 1
# torch threads for evaluation work. These nets and matrices are small: on shared cores a second intra-op thread
# made them 2-40x slower (docs/benchmarks.md), and the pipeline runs evaluations beside other steps.
EVAL_THREADS = 1


@contextmanager
def torch_threads(n: int = EVAL_THREADS) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads, restoring the caller's setting after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class FeatureExtractor:
    model: torch.nn.Module  # small CNN classifier; penultimate layer = features
    classes: list[str]  # model output index -> label
    image_mode: str  # "L" | "RGB"
    image_size: tuple[int, int]  # (width, height) it takes
    val_accuracy: float  # accuracy on the real val split
    data_fingerprint: str  # of the train images+labels it was fit on
    feature_dim: int


def images_fingerprint(images: np.ndarray, labels: Sequence[str]) -> str:
    """sha256 (first 16 hex digits) of the images' bytes, shape and labels: what a feature space was fit on."""
    h = hashlib.sha256()
    arr = np.ascontiguousarray(images)
    h.update(repr((arr.shape, str(arr.dtype))).encode())
    h.update(arr.tobytes())
    h.update("\x00".join(map(str, labels)).encode())
    return h.hexdigest()[:16]


def _build_cnn(channels: int, height: int, width: int, num_classes: int, feature_dim: int = FEATURE_DIM):
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        """conv blocks -> adaptive 4x4 pool -> `feature_dim` features (ReLU) -> class logits."""

        def __init__(self) -> None:
            super().__init__()
            pools = 2 if min(height, width) >= 16 else 1
            layers: list[nn.Module] = []
            c_in = channels
            for i, c_out in enumerate(WIDTHS):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                if i < pools:
                    layers.append(nn.MaxPool2d(2))
                c_in = c_out
            layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten()]
            self.body = nn.Sequential(*layers)
            self.embed = nn.Sequential(nn.Linear(WIDTHS[-1] * 16, feature_dim), nn.ReLU())
            self.drop = nn.Dropout(0.3)
            self.head = nn.Linear(feature_dim, num_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.embed(self.body(x))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(self.features(x)))

    return SmallCNN()


def _arch(model: Any) -> dict[str, int]:
    return dict(model.arch)


def to_tensor(images: np.ndarray, mode: str, size: tuple[int, int]):
    """uint8 (N, H, W) or (N, H, W, 3) -> float32 (N, C, H, W) in [-1, 1], converted to `mode` and `size`.

    Grey images given to an RGB network are repeated over the channels; colour images given to a grey one
    become Pillow's luma. Another size is resized (bilinear, antialiased), so any image set can be measured.
    """
    import torch
    import torch.nn.functional as F

    from synthdata.color import rgb_to_l

    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if mode == "L" and arr.ndim == 4:
        arr = rgb_to_l(np.ascontiguousarray(arr[..., :3]))
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8)).float().div_(127.5).sub_(1.0)
    t = t.unsqueeze(1) if t.ndim == 3 else t[..., :3].permute(0, 3, 1, 2)
    if mode == "RGB" and t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    width, height = size
    if t.shape[-2:] != (height, width):
        t = F.interpolate(t, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return t.contiguous()


def _accuracy(model: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    import torch

    if len(x) == 0:
        return float("nan")
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            correct += int((model(x[s : s + batch_size]).argmax(1) == y[s : s + batch_size]).sum())
    return correct / len(x)


@dataclass
class TrainedCNN:
    model: Any  # torch.nn.Module, in eval mode, best epoch's weights
    val_accuracy: float
    epochs: int
    seconds: float


def train_cnn(
    x: torch.Tensor,
    y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    num_classes: int,
    *,
    seed: int,
    max_seconds: float,
    max_epochs: int,
    patience: int = 3,
    batch_size: int = 64,
) -> TrainedCNN:
    """Train a fresh SmallCNN on (x, y) (float tensors from `to_tensor`, int64 labels); keep the best val epoch.

    `seed` fixes the initial weights and the batch order. With an empty val set the last epoch is kept.
    """
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights (nn.init draws from the global generator) and dropout
        model = _build_cnn(x.shape[1], x.shape[2], x.shape[3], num_classes)
        model.arch = {"channels": int(x.shape[1]), "height": int(x.shape[2]), "width": int(x.shape[3]),
                      "num_classes": int(num_classes), "feature_dim": FEATURE_DIM}  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        # Decay per epoch: with a constant rate, Fashion-MNIST val accuracy swung by up to 3 points between epochs.
        # Batches of 64 with this decay reached 0.858 in 5 epochs of 10,000 images (~24 CPU-seconds), where
        # batches of 128 needed 8.
        decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.85)
        best_acc, best_state, stale, epoch, steps = -1.0, None, 0, 0, 0
        out_of_time = False
        for epoch in range(1, max_epochs + 1):
            model.train()
            order = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), batch_size):
                idx = order[s : s + batch_size]
                if len(idx) < 2:  # BatchNorm needs two rows
                    continue
                loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                # A large set's epoch can outlast the budget: stop inside it (after a minimum of learning).
                if steps >= 50 and time.perf_counter() - start > max_seconds:
                    out_of_time = True
                    break
            decay.step()
            acc = _accuracy(model, val_x, val_y) if len(val_x) else float(epoch)
            if acc > best_acc:
                best_acc, stale = acc, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            if stale >= patience or out_of_time or time.perf_counter() - start > max_seconds:
                break
        model.load_state_dict(best_state)
    model.eval()
    val_acc = best_acc if len(val_x) else float("nan")
    return TrainedCNN(model=model, val_accuracy=float(val_acc), epochs=epoch, seconds=time.perf_counter() - start)


def train_feature_extractor(
    train_x: np.ndarray,
    train_y: Sequence[str],
    val_x: np.ndarray,
    val_y: Sequence[str],
    *,
    seed: int = 0,
    max_seconds: float = 60.0,
    max_epochs: int = 30,
    data_fingerprint: str = "",
) -> FeatureExtractor:
    """Fit the feature space on real uint8 images, (N, H, W) or (N, H, W, 3), with string labels.

    Early-stopped on val accuracy. With no val images, a seeded 10% of train stands in for val (and
    `val_accuracy` is measured there). `data_fingerprint` defaults to `images_fingerprint(train_x, train_y)`.
    """
    import torch

    train_x = np.asarray(train_x)
    train_y = [str(v) for v in train_y]
    val_y = [str(v) for v in val_y]
    if len(train_x) == 0:
        raise ValueError("the feature extractor needs real train images")
    classes = sorted(set(train_y))
    if len(classes) < 2:
        raise ValueError(f"the feature extractor needs two or more classes in train, got {classes}")
    mode = "RGB" if train_x.ndim == 4 and train_x.shape[-1] >= 3 else "L"
    size = (int(train_x.shape[2]), int(train_x.shape[1]))
    index = {c: i for i, c in enumerate(classes)}
    fit_x, fit_y = train_x, np.array([index[c] for c in train_y], dtype=np.int64)
    keep = [i for i, c in enumerate(val_y) if c in index]  # a val class the train split lacks cannot be scored
    vx = np.asarray(val_x)[keep] if keep else train_x[:0]
    vy = np.array([index[val_y[i]] for i in keep], dtype=np.int64)
    if not keep:
        perm = np.random.default_rng(seed).permutation(len(train_x))
        cut = max(1, len(train_x) // 10)
        vx, vy, fit_x, fit_y = train_x[perm[:cut]], fit_y[perm[:cut]], train_x[perm[cut:]], fit_y[perm[cut:]]
    with torch_threads():
        trained = train_cnn(
            to_tensor(fit_x, mode, size), torch.from_numpy(fit_y), to_tensor(vx, mode, size), torch.from_numpy(vy),
            len(classes), seed=seed, max_seconds=max_seconds, max_epochs=max_epochs,
        )  # fmt: skip
    return FeatureExtractor(
        model=trained.model,
        classes=classes,
        image_mode=mode,
        image_size=size,
        val_accuracy=trained.val_accuracy,
        data_fingerprint=data_fingerprint or images_fingerprint(train_x, train_y),
        feature_dim=FEATURE_DIM,
    )


def save_feature_extractor(fx: FeatureExtractor, path: Path) -> None:
    """One dict of tensors and plain data (loadable with weights_only=True), written atomically and fsynced."""
    import torch

    payload = {
        "format_version": FORMAT_VERSION,
        "arch": _arch(fx.model),
        "state_dict": fx.model.state_dict(),
        "classes": list(fx.classes),
        "image_mode": fx.image_mode,
        "image_size": list(fx.image_size),
        "val_accuracy": float(fx.val_accuracy),
        "data_fingerprint": fx.data_fingerprint,
        "feature_dim": int(fx.feature_dim),
    }
    with replacing(Path(path)) as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())


def load_feature_extractor(path: Path) -> FeatureExtractor:
    import torch

    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: feature extractor format {ckpt.get('format_version')}, expected {FORMAT_VERSION}")
    arch = ckpt["arch"]
    model = _build_cnn(arch["channels"], arch["height"], arch["width"], arch["num_classes"], arch["feature_dim"])
    model.arch = dict(arch)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return FeatureExtractor(
        model=model,
        classes=list(ckpt["classes"]),
        image_mode=ckpt["image_mode"],
        image_size=(int(ckpt["image_size"][0]), int(ckpt["image_size"][1])),
        val_accuracy=float(ckpt["val_accuracy"]),
        data_fingerprint=ckpt["data_fingerprint"],
        feature_dim=int(ckpt["feature_dim"]),
    )


def extract_features(fx: FeatureExtractor, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """float32 (N, feature_dim): the penultimate layer for each image (converted to the extractor's mode/size)."""
    import torch

    arr = np.asarray(images)
    out = np.empty((len(arr), fx.feature_dim), dtype=np.float32)
    if len(arr) == 0:
        return out
    fx.model.eval()
    with torch.no_grad(), torch_threads():
        for s in range(0, len(arr), batch_size):
            batch = to_tensor(arr[s : s + batch_size], fx.image_mode, fx.image_size)
            out[s : s + len(batch)] = fx.model.features(batch).numpy()
    return out


def predict(fx: FeatureExtractor, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The extractor's predicted label (a class name) for each image."""
    import torch

    arr = np.asarray(images)
    preds: list[np.ndarray] = []
    fx.model.eval()
    with torch.no_grad(), torch_threads():
        for s in range(0, len(arr), batch_size):
            preds.append(fx.model(to_tensor(arr[s : s + batch_size], fx.image_mode, fx.image_size)).argmax(1).numpy())
    names = np.array(fx.classes, dtype=object)
    return names[np.concatenate(preds)] if preds else np.array([], dtype=object)
