"""Stage 4, augment: `augmented_images`, seeded augmented copies of the train split with per-row lineage."""


import json
import time
import dagster as dg
import numpy as np
import pandas as pd

from assets._util import load_split
from resources import ImageStoreResource, TorchDevice, WarehouseResource
from synthdata.io.arrays import store_pngs
from synthdata.render import image_grid, markdown_image
from synthdata.io.warehouse import replace_table


class AugmentConfig(dg.Config):
    copies_per_image: int = 1
    seed: int = 0
    batch_size: int = 512
    # An AugmentPolicy as YAML text (see docs/augmentation.md); empty = AugmentPolicy.default().
    policy_yaml: str = ""
    # Format to augment in: "" / 0 = what most train images have (originals are never changed).
    image_mode: str = ""
    image_size: int = 0


@dg.asset(
    deps=["splits"],
    pool="duckdb",
    group_name="augmentation",
    kinds={"duckdb", "pytorch"},
    description=(
        "Augmented copies of the train split under a declarative policy, applied in batches on the torch "
        "device. Each row is reproducible from (policy, seed, parent_id) and records the ops and parameters."
    ),
)
def augmented_images(
    context: dg.AssetExecutionContext,
    config: AugmentConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
    torch_device: TorchDevice,
) -> dg.MaterializeResult:
    import torch

    from synthdata.augment import AugmentPolicy, augment_batch

    policy = AugmentPolicy.from_yaml(config.policy_yaml) if config.policy_yaml.strip() else AugmentPolicy.default()
    device = torch_device.resolve()
    store = image_store.store()
    with warehouse.connect() as con:
        train = load_split(con, store, "train", config.image_mode, config.image_size)
    classes = sorted(set(train.labels))
    class_index = {c: i for i, c in enumerate(classes)}
    pixels = train.pixels

    start = time.perf_counter()
    rows, before, after = [], [], []
    for copy in range(config.copies_per_image):
        for s in range(0, len(train.ids), config.batch_size):
            part_ids, part_labels = train.ids[s : s + config.batch_size], train.labels[s : s + config.batch_size]
            arr = pixels[s : s + config.batch_size]
            x = torch.from_numpy(arr if arr.ndim == 4 else arr[..., None]).permute(0, 3, 1, 2).float().div(255).to(device)
            y = torch.tensor([class_index[label] for label in part_labels], device=device)
            # Each copy is a distinct draw: the copy index is part of the row's identity.
            parents = [f"{pid}#{copy}" for pid in part_ids]
            result = augment_batch(x, y, len(classes), parents, policy, config.seed)
            out = (result.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            out = out[..., 0] if out.shape[-1] == 1 else out
            stored = store_pngs(store, out, "augmented")
            soft = result.soft_labels.cpu().numpy()
            for (cid, key), pid, label, rec, sl in zip(stored, part_ids, part_labels, result.records, soft):
                rows.append(
                    {
                        "aug_id": f"{pid[:16]}-{copy}-{cid[:16]}",
                        "parent_id": pid,
                        "label": label,
                        "copy_index": copy,
                        "seed": config.seed,
                        "policy_fingerprint": policy.fingerprint(),
                        "ops": json.dumps(rec["ops"]),
                        "soft_label": json.dumps({c: round(float(v), 4) for c, v in zip(classes, sl) if v > 0}),
                        "blob_key": key,
                    }
                )
            if not before:
                before, after = list(arr[:10]), list(out[:10])
    seconds = time.perf_counter() - start
    df = pd.DataFrame(rows)
    with warehouse.connect() as con:
        replace_table(con, "augmented_images", df)
    op_counts = pd.Series([op["op"] for r in rows for op in json.loads(r["ops"])]).value_counts().to_dict()
    grid = image_grid(np.stack(before + after), ncol=len(before), scale=4)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(df),
            "parents": len(train.ids),
            "copies_per_image": config.copies_per_image,
            "device": device,
            "seconds": round(seconds, 2),
            "images_per_second": round(len(df) / max(seconds, 1e-9), 1),
            "policy_fingerprint": policy.fingerprint(),
            "policy": dg.MetadataValue.md("```yaml\n" + policy.to_yaml() + "\n```"),
            "ops_applied": dg.MetadataValue.json({k: int(v) for k, v in op_counts.items()}),
            "before_after": dg.MetadataValue.md("Originals (top) and augmented (bottom):\n\n" + markdown_image(grid)),
        }
    )
