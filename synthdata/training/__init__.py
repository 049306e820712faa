"""Training generators and sampling from their checkpoints.

loop.py (TrainConfig, train_generator) uses plan.py (compute-aware sizing: a timed warm-up picks arch, width and
batch size for the device and budget), distributed.py (process group, gradient averaging, data sharding),
ema.py, quality.py (the val-split quality probe), figures.py (sample grids, loss and training curves) and
checkpoint.py (atomic, resumable, publishable checkpoints; unreadable ones moved aside). inputs.py says which
augmented rows a generator may train on. sample.py (load_generator) needs only checkpoint.py, tensors.py and
synthdata.models, never the loop. `python -m synthdata.training` is the command line (__main__.py).
"""
