"""Stage 4, augment: `augmented_images`, seeded augmented copies of the train split with per-row lineage."""

import dagster as dg
import numpy as np

from assets._util import load_split
from resources import ImageStoreResource, TorchDevice, WarehouseResource
from synthdata.io.warehouse import replace_table
from synthdata.render import image_grid, markdown_image


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
    from synthdata.augment import AugmentPolicy
    from synthdata.augment.dataset import augment_split

    policy = AugmentPolicy.from_yaml(config.policy_yaml) if config.policy_yaml.strip() else AugmentPolicy.default()
    device = torch_device.resolve()
    store = image_store.store()
    with warehouse.connect() as con:
        train = load_split(con, store, "train", config.image_mode, config.image_size)
    result = augment_split(
        train.pixels, train.ids, train.labels, policy, config.seed, config.copies_per_image, config.batch_size,
        device, store,
    )
    with warehouse.connect() as con:
        replace_table(con, "augmented_images", result.rows)
    grid = image_grid(np.concatenate([result.before, result.after]), ncol=len(result.before), scale=4)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(result.rows),
            "parents": len(train.ids),
            "copies_per_image": config.copies_per_image,
            "device": device,
            "seconds": round(result.seconds, 2),
            "images_per_second": round(len(result.rows) / max(result.seconds, 1e-9), 1),
            "policy_fingerprint": policy.fingerprint(),
            "policy": dg.MetadataValue.md("```yaml\n" + policy.to_yaml() + "\n```"),
            "ops_applied": dg.MetadataValue.json(result.op_counts),
            "before_after": dg.MetadataValue.md("Originals (top) and augmented (bottom):\n\n" + markdown_image(grid)),
        }
    )
