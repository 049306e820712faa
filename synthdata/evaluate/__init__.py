"""Evaluation of synthetic data, Dagster-free.

features (the pipeline's own CNN feature space) -> metrics (a registry over shared features: fidelity.py's FID,
KID, precision/recall/density/coverage; privacy.py's distance to closest record and membership attack) ->
suite (`evaluate_synthetic`: features once, every metric, utility.py's seeded TRTR/TSTR/TRTS, scarcity.py's
study, figures.py's pictures) -> gate (floors, verdict) -> report (the markdown page).
"""
