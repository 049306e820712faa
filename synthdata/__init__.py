"""synthdata: the Dagster-free engine behind the pipeline.

Image I/O, hashing, dedup, splits, augmentation, generative models, training and metrics. Nothing in this
package imports Dagster, so every function here can be unit-tested and reused from a notebook or script.
"""

__version__ = "0.1.0"
