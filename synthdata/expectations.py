"""Table validations with Great Expectations 1.x, returning results a person (and a UI) can read.

Each check is a list of named expectations over a pandas frame; the summary keeps, per expectation, whether it
passed and how many rows broke it, so a failing check says exactly what to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationSummary:
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_markdown(self) -> str:
        lines = ["| expectation | column | ok | unexpected |", "|---|---|---|---|"]
        for o in self.outcomes:
            lines.append(
                f"| {o.expectation} | {o.column or ''} | {'yes' if o.success else '**no**'} | {o.unexpected_count if o.unexpected_count is not None else ''} |"
            )
        return "\n".join(lines)


def validate(df: pd.DataFrame, expectations: list[tuple[str, dict[str, Any]]], name: str = "table") -> ValidationSummary:
    """Run expectations given as (GE expectation class name, kwargs), e.g.
    ("ExpectColumnValuesToNotBeNull", {"column": "label"})."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(f"{name}_source")
    asset = source.add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(f"{name}_batch").get_batch(batch_parameters={"dataframe": df})
    suite = gx.ExpectationSuite(name=f"{name}_suite")
    for cls_name, kwargs in expectations:
        suite.add_expectation(getattr(gx.expectations, cls_name)(**kwargs))
    results = batch.validate(suite).results
    outcomes = []
    for (cls_name, kwargs), result in zip(expectations, results):
        res = result.result or {}
        outcomes.append(
            ExpectationOutcome(
                expectation=cls_name,
                column=kwargs.get("column") or ",".join(kwargs.get("column_list", [])) or None,
                success=bool(result.success),
                unexpected_count=res.get("unexpected_count"),
                details={k: res[k] for k in ("observed_value", "partial_unexpected_list") if k in res},
            )
        )
    return ValidationSummary(success=all(o.success for o in outcomes), outcomes=outcomes)
