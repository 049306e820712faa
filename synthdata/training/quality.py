"""A cheap quality probe run every N steps: TSTR/TRTR in miniature, on the val split.

A loss curve says whether training still moves, not whether the samples got more useful, and a GAN's losses
say neither. The probe asks the question the quality gate asks later, on a budget small enough to ask it a few
times per run: a ridge classifier (closed form, deterministic, milliseconds) on pixels area-pooled to at most
16x16 per channel is fit once on `per_class` real train images per class and once per probe on as many EMA
samples; both are scored on the val split. `probe_ratio` = accuracy from samples / accuracy from real images.

Only the val split is used for anything the run reports or chooses; the test split never enters training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from synthdata.models import GenerativeModel

POOL_SIDE = 16  # images are area-pooled to at most this side: enough for a class, cheap for a ridge fit
MAX_VAL = 2000  # val images scored (a seeded pick when the split is larger)


class QualityProbe:
    def __init__(
        self,
        train: np.ndarray,
        train_labels: np.ndarray,
        val: np.ndarray,
        val_labels: np.ndarray,
        num_classes: int,
        per_class: int,
        seed: int,
        ridge: float = 1.0,
    ) -> None:
        """`train` / `val`: uint8 (N, C, H, W). The real reference and the val scores are computed here, once."""
        rng = np.random.default_rng(seed)
        self.num_classes, self.ridge, self.seed = num_classes, ridge, seed
        train_labels, val_labels = np.asarray(train_labels), np.asarray(val_labels)
        pick = np.concatenate([rng.permutation(np.flatnonzero(train_labels == c))[:per_class] for c in range(num_classes)])
        self.labels = np.sort(train_labels[pick]).astype(np.int64)  # the sampled labels mirror the real pick
        if len(val) > MAX_VAL:
            keep = np.sort(rng.permutation(len(val))[:MAX_VAL])
            val, val_labels = val[keep], val_labels[keep]
        self.val_x, self.val_y = features(torch.from_numpy(np.ascontiguousarray(val))), torch.from_numpy(val_labels)
        self.real_accuracy = self._accuracy(features(torch.from_numpy(train[pick])), torch.from_numpy(train_labels[pick]))

    def __call__(self, model: GenerativeModel, device: torch.device) -> dict[str, float]:
        """probe_tstr (val accuracy of the classifier fit on samples), probe_trtr, probe_ratio."""
        labels = torch.from_numpy(self.labels).to(device)
        with torch.no_grad():
            x = model.sample(labels, torch.Generator(device).manual_seed(self.seed))  # same noise every probe
        u8 = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        acc = self._accuracy(features(u8), labels.cpu())
        ratio = acc / self.real_accuracy if self.real_accuracy > 0 else 0.0
        return {"probe_tstr": round(acc, 4), "probe_trtr": round(self.real_accuracy, 4), "probe_ratio": round(ratio, 4)}

    def _accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fit a ridge classifier (one-hot targets, centred features, closed form) on (x, y); val accuracy."""
        x64, mean = x.double(), x.double().mean(0, keepdim=True)
        xc = x64 - mean
        targets = F.one_hot(y.long(), self.num_classes).double()
        gram = xc.T @ xc + self.ridge * torch.eye(x.shape[1], dtype=torch.float64)
        w = torch.linalg.solve(gram, xc.T @ (targets - targets.mean(0, keepdim=True)))
        b = targets.mean(0) - (mean @ w).squeeze(0)
        pred = ((self.val_x.double() @ w) + b).argmax(1)
        return float((pred == self.val_y).double().mean())


def features(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float rows in [0, 1], area-pooled so that neither side exceeds POOL_SIDE."""
    x = images.float() / 255.0
    h, w = x.shape[-2:]
    if max(h, w) > POOL_SIDE:
        x = F.adaptive_avg_pool2d(x, (min(h, POOL_SIDE), min(w, POOL_SIDE)))
    return x.flatten(1)
