
import dagster as dg


class QualityResource(dg.ConfigurableResource):
    """Thresholds that data-quality checks and gates enforce."""

    min_side: int = 8
    max_side: int = 4096
    min_images_per_split: int = 1
    min_tstr_trtr_ratio: float = 0.90
    max_copy_fraction: float = 0.05
