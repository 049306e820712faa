"""Duplicate detection: perceptual hashes, candidate search, pixel confirmation and grouping."""
