"""Checkpoints that survive a kill at any instant and resume bit-identically.

* Atomic: the file is written to a temporary name in the same directory, fsynced, then `os.replace`d over the
  old one. A reader sees either the previous complete checkpoint or the new complete one, never half a file.
* Loadable with `torch.load(weights_only=True)`: everything inside is tensors, dicts, lists, str, int, float,
  bool or None. The config is stored as a JSON-able dict; RNG states as tensors / lists of ints.
* Complete: besides weights and optimizer state it holds every RNG the loop draws from (torch CPU, CUDA, numpy,
  python, and the data sampler's position), so step k+1 after a resume is the same step k+1 as without one.
* Self-describing: `model_args` holds the model's constructor arguments as plain data, so
  `synthdata.models.build_model` rebuilds the network from the checkpoint alone, without the training code.
* Published by content: `publish_checkpoint` copies a finished run's file to a name derived from its bytes.
* Never silently lost: `read_run_checkpoint` moves a file that fails to load aside (`<name>.corrupt-<time>`) and
  returns an event saying so, which the loop logs as a warning and records in the next checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthdata.io.atomic import replacing, write_atomic

# 2: the training plan, events and quality probes are stored; diffusion models default to EDM preconditioning
# (format-1 diffusion checkpoints were trained with plain epsilon prediction, see checkpoint_model_args).
FORMAT_VERSION = 2


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    path = Path(path)
    with replacing(path, make_parent=False) as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    # Make the rename itself durable (POSIX: the directory entry lives in the directory's own data).
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def read_run_checkpoint(
    path: Path, map_location: str | torch.device, move_aside: bool = True
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the run folder's checkpoint or None, an event or None).

    A file that exists but does not load (truncated, not a checkpoint, written by something else) is not a run
    that can be continued, and it must not be overwritten silently either: it is renamed to
    `<name>.corrupt-<UTC time>` (only where `move_aside`, i.e. on DDP rank 0) and the event records what
    happened, so the caller can warn, and the next checkpoint and the asset's metadata can say so.
    """
    path = Path(path)
    if not path.exists():
        return None, None
    try:
        return load_checkpoint(path, map_location=map_location), None
    except Exception as exc:  # any failure to load means the same thing here: this file cannot be resumed
        error = f"{type(exc).__name__}: {exc}"[:500]
    moved = None
    if move_aside:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while moved.exists():
            moved, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
        os.replace(path, moved)
    event = {"event": "unreadable checkpoint", "path": str(path), "moved_to": str(moved) if moved else None,
             "error": error, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return None, event


def checkpoint_model_args(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's `model_args` (see `synthdata.models.build_model`).

    Checkpoints written before `model_args` was stored hold the whole training config as JSON data instead, with
    the family's config nested under the family's name; the model's arguments are read from that. Diffusion
    checkpoints of format 1 predate the `precondition` field and were trained without it ("eps").
    """
    if "model_args" in ckpt:
        args = ckpt["model_args"]
    else:
        config = ckpt["config"]
        args = {"family": config["family"], "shape": list(ckpt["shape"]), "num_classes": int(ckpt["num_classes"]),
                "config": config[config["family"]]}
    if args["family"] == "diffusion" and int(ckpt.get("format", 1)) < 2 and "precondition" not in args["config"]:
        args = {**args, "config": {**args["config"], "precondition": "eps"}}  # how format-1 models were trained
    return args


def publish_checkpoint(run_checkpoint: Path, dest_dir: Path) -> tuple[str, Path]:
    """Copy a run's checkpoint to dest_dir/<id>.pt, id = the first 16 hex digits of the sha256 of its bytes.

    A run folder's checkpoint is overwritten by the next run there; a published file never changes, so whatever
    was sampled from it stays traceable to the exact weights. Publishing the same bytes again returns the same
    (id, path) and leaves the published file alone. Returns (checkpoint_id, published_path).
    """
    data = Path(run_checkpoint).read_bytes()
    checkpoint_id = hashlib.sha256(data).hexdigest()[:16]
    published = Path(dest_dir) / f"{checkpoint_id}.pt"
    if not published.exists():
        write_atomic(published, data)
    return checkpoint_id, published


def fingerprint(config: dict[str, Any], images: np.ndarray, labels: np.ndarray, num_classes: int, world_size: int) -> str:
    """Identity of a training trajectory: config (minus pure budgets/cadences) + exact data + DDP world size.

    Budgets (max_steps, max_seconds) and logging/checkpoint cadences don't change what step k computes, so a run
    may be resumed with a larger budget. The world size does (it changes how batches are sharded).
    """
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True).encode())
    for arr in (np.ascontiguousarray(images), np.ascontiguousarray(labels).astype(np.int64)):
        h.update(str((arr.shape, arr.dtype.str)).encode())
        h.update(arr.tobytes())
    h.update(f"classes={num_classes};world={world_size};v={FORMAT_VERSION}".encode())
    return h.hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state_dict's names and exact bytes: equal digests <=> bit-identical weights."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def capture_rng(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    # A checkpoint loaded with map_location="cuda" has every tensor on the GPU, these CPU states too.
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
