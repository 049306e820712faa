from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import dagster as dg
import yaml
from pydantic import field_validator

if TYPE_CHECKING:
    from synthdata.evaluate.gate import Floor

# Applies to every family; a family's own entry is applied after it.
ALL_FAMILIES = "all"


def parse_floors(text: str) -> dict[str, dict[str, dict[str, float] | None]]:
    """`{family | "all": {metric: {min: v, max: v} | null}}` from YAML, validated (null drops that floor)."""
    data = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"floors_yaml must map family -> metric -> {{min|max: value}}, got {type(data).__name__}")
    for family, floors in data.items():
        if not isinstance(floors, dict):
            raise ValueError(f"floors_yaml[{family!r}] must map metric -> {{min|max: value}}")
        for metric, bound in floors.items():
            if bound is None:
                continue
            if not isinstance(bound, dict) or not bound or set(bound) - {"min", "max"}:
                raise ValueError(f"floors_yaml[{family!r}][{metric!r}] must be {{min: v}}, {{max: v}}, both, or null")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bound.values()):
                raise ValueError(f"floors_yaml[{family!r}][{metric!r}] bounds must be numbers, got {bound}")
    return data


class QualityResource(dg.ConfigurableResource):
    """Thresholds that data-quality checks and gates enforce."""

    # Sides outside min_side..max_side make the tables' expectations WARN (never fail): the image store's
    # decode limits decide what is accepted, so by default there is no upper bound here (a 48 MP phone photo
    # is data, not an anomaly).
    min_side: int = 8
    max_side: int | None = None
    min_images_per_split: int = 1
    # Shorthands kept for existing configs: when set, they replace the default tstr_trtr_ratio min /
    # near_copy_fraction max of every family (floors_yaml still wins for the families it names).
    min_tstr_trtr_ratio: float | None = None
    max_copy_fraction: float | None = None
    # Per-family gate floors on top of synthdata.evaluate.gate.default_floors, e.g.
    #   all: {coverage: {min: 0.6}}
    #   diffusion: {tstr_trtr_ratio: {min: 0.95}, mia_auc: null}
    # An entry replaces that metric's floor (both bounds); null removes it.
    floors_yaml: str = ""
    # Dedup may remove up to this share of any class's distinct images before `images_class_balance` warns,
    # and up to this share before it fails (blocking what follows).
    class_removed_warn: float = 0.05
    class_removed_error: float = 0.20

    @field_validator("floors_yaml")
    @classmethod
    def _valid_floors(cls, value: str) -> str:
        parse_floors(value)  # fail when the resource is configured, not when the gate first runs
        return value

    def side_bounds(self) -> dict[str, int]:
        """Great Expectations' between-bounds for an image side (no max_value when max_side is None)."""
        return {"min_value": self.min_side} | ({} if self.max_side is None else {"max_value": self.max_side})

    def floors_for(self, family: str) -> list[Floor]:
        """The floors `family`'s evaluations are judged against: defaults, then shorthands, then floors_yaml."""
        from synthdata.evaluate.gate import Floor, default_floors

        floors: dict[str, Floor] = {f.metric: f for f in default_floors(family)}
        shorthand = {"tstr_trtr_ratio": ("min", self.min_tstr_trtr_ratio), "near_copy_fraction": ("max", self.max_copy_fraction)}
        for metric, (side, value) in shorthand.items():
            if value is not None:
                floors[metric] = replace(floors.get(metric, Floor(metric)), **{side: float(value)})
        overrides = parse_floors(self.floors_yaml)
        for scope in (ALL_FAMILIES, family):
            for metric, bound in (overrides.get(scope) or {}).items():
                if bound is None:
                    floors.pop(metric, None)
                else:
                    floors[metric] = Floor(metric, min=bound.get("min"), max=bound.get("max"))
        return list(floors.values())
