"""Training generators and sampling from their checkpoints.

loop.py (TrainConfig, train_generator) uses distributed.py (process group, gradient averaging, data sharding),
ema.py, figures.py (sample grids, loss curves) and checkpoint.py (atomic, resumable, publishable checkpoints).
sample.py (load_generator) needs only checkpoint.py, tensors.py and synthdata.models, never the loop.
`python -m synthdata.training` is the command line (__main__.py).
"""
