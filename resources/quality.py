
import dagster as dg


class QualityResource(dg.ConfigurableResource):
    """Thresholds that data-quality checks and gates enforce."""

    min_side: int = 8
    max_side: int = 4096
    min_images_per_split: int = 1
    min_tstr_trtr_ratio: float = 0.90
    max_copy_fraction: float = 0.05
    # Dedup may remove up to this share of any class's distinct images before `images_class_balance` warns,
    # and up to this share before it fails (blocking what follows).
    class_removed_warn: float = 0.05
    class_removed_error: float = 0.20
