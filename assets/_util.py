"""Small helpers shared by asset modules (metadata formatting, reading tables)."""


import pandas as pd


def md_table(df: pd.DataFrame, max_rows: int = 50) -> str:
    """A markdown table for the Dagster UI (no tabulate dependency)."""
    if df.empty:
        return "_none_"
    shown = df.head(max_rows)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in shown.itertuples(index=False)]
    more = [f"\n_{len(df) - max_rows} more rows not shown_"] if len(df) > max_rows else []
    return "\n".join([header, sep, *rows, *more])


def counts_md(series: pd.Series, name: str) -> str:
    vc = series.fillna("(none)").value_counts().sort_index()
    return md_table(pd.DataFrame({name: vc.index, "count": vc.to_numpy()}), max_rows=200)
