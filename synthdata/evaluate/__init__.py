"""Evaluation of synthetic data: utility (`utility`), memorization (`privacy`) and the report (`report`)."""
