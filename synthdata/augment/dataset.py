"""A split in, augmented rows out: every copy of every image through `augment_batch`, stored as PNGs.

Row i of copy c is drawn for parent_id `<image_id>#<c>`, so each copy is a distinct draw and every stored
image is reproducible from (policy, seed, image id, copy index); mixup and cutmix rows also need their
recorded partner, which is a row of the same batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from synthdata.augment.engine import augment_batch
from synthdata.augment.policy import AugmentPolicy
from synthdata.io.arrays import store_pngs
from synthdata.io.store import BlobStore

# The namespace of the blob store that augmented images are written under.
NAMESPACE = "augmented"


@dataclass
class AugmentedSplit:
    """What `augment_split` made.

    rows: one per augmented image (aug_id, parent_id, label, copy_index, seed, policy_fingerprint, ops as
    JSON, soft_label as JSON {class: weight}, blob_key). before / after: the first `preview` originals of the
    first batch and the same rows augmented (copy 0), uint8 like the input. op_counts: how often each op was
    applied, most frequent first. seconds: the time spent augmenting, storing and building the rows.
    """

    rows: pd.DataFrame
    before: np.ndarray
    after: np.ndarray
    op_counts: dict[str, int]
    seconds: float


def augment_split(
    pixels: np.ndarray,
    ids: Sequence[str],
    labels: Sequence[str],
    policy: AugmentPolicy,
    seed: int,
    copies: int,
    batch_size: int,
    device: str | torch.device,
    store: BlobStore,
    preview: int = 10,
) -> AugmentedSplit:
    """Augment `copies` copies of each image, store each result as a PNG, and return one row per result.

    `pixels` are uint8 (N, H, W) or (N, H, W, 3) with their image `ids` and class-name `labels`; the classes
    are the sorted distinct labels. Batches of `batch_size` rows run on `device`.
    """
    classes = sorted(set(labels))
    class_index = {c: i for i, c in enumerate(classes)}
    fingerprint = policy.fingerprint()
    start = time.perf_counter()
    rows: list[dict[str, object]] = []
    applied: list[str] = []
    before, after = [], []
    for copy in range(copies):
        for s in range(0, len(ids), batch_size):
            part_ids, part_labels = ids[s : s + batch_size], labels[s : s + batch_size]
            arr = pixels[s : s + batch_size]
            hwc = torch.from_numpy(arr if arr.ndim == 4 else arr[..., None])
            x = hwc.permute(0, 3, 1, 2).float().div(255).to(device)  # channels-last memory: the engine copies once
            y = torch.tensor([class_index[label] for label in part_labels], device=device)
            parents = [f"{pid}#{copy}" for pid in part_ids]
            result = augment_batch(x, y, len(classes), parents, policy, seed)
            out = (result.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            out = out[..., 0] if out.shape[-1] == 1 else out
            stored = store_pngs(store, out, NAMESPACE)
            soft = result.soft_labels.cpu().numpy()
            for (cid, key), pid, label, rec, sl in zip(stored, part_ids, part_labels, result.records, soft):
                applied += [op["op"] for op in rec["ops"]]
                rows.append(
                    {
                        "aug_id": f"{pid[:16]}-{copy}-{cid[:16]}",
                        "parent_id": pid,
                        "label": label,
                        "copy_index": copy,
                        "seed": seed,
                        "policy_fingerprint": fingerprint,
                        "ops": json.dumps(rec["ops"]),
                        "soft_label": json.dumps({c: round(float(v), 4) for c, v in zip(classes, sl) if v > 0}),
                        "blob_key": key,
                    }
                )
            if not before:
                before, after = list(arr[:preview]), list(out[:preview])
    seconds = time.perf_counter() - start
    return AugmentedSplit(
        rows=pd.DataFrame(rows),
        before=np.array(before, dtype=np.uint8),
        after=np.array(after, dtype=np.uint8),
        op_counts={k: int(v) for k, v in pd.Series(applied).value_counts().items()},
        seconds=seconds,
    )
