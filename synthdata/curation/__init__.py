"""Curation stages: streaming ingest of drops, exact + near-duplicate curation, leak-free splits."""
