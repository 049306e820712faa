"""Training generators: the loop, distributed helpers, checkpoints, and sampling from a checkpoint."""
