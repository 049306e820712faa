"""Where every row's randomness comes from: a stable per-row key and the SplitMix64 uniforms drawn from it.

A row's key is a blake2b hash of (policy fingerprint, seed, parent_id) (`row_seed`); its uniforms are the first
K outputs of the SplitMix64 generator started at that key (`draw_uniforms`). SplitMix64 is counter-based
(output j is a pure function of key + (j + 1) * golden gamma), so every uniform of every row comes out of a few
NumPy uint64 operations over the whole (N, K) block, with no per-row generator to seed. A row's draws
therefore depend on nothing else in the batch: not its position, not the batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from synthdata.augment.policy import AugmentPolicy

# How a row's seed becomes its op parameters (the generator and the layout of its draws). It is hashed into
# every fingerprint, so rows drawn by a different sampler never share a fingerprint in the warehouse: change
# it whenever the same (policy, seed, parent_id) would draw different parameters.
SAMPLER_VERSION = "splitmix64-v2"

# SplitMix64 (Steele, Lea & Flood 2014): state advances by the golden gamma, output is the state mixed by two
# multiply-xorshift rounds. Counter-based, so draw j of a row is mix(key + (j + 1) * gamma) for any j.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def row_seed(fingerprint: str, seed: int, parent_id: str) -> int:
    """The 64-bit key of one row: a stable hash, unlike Python's salted `hash()`."""
    return int(_row_keys(fingerprint, seed, [parent_id])[0])


def _row_keys(fingerprint: str, seed: int, parent_ids: Sequence[str]) -> np.ndarray:
    """The 64-bit key of every row (uint64): blake2b of "fingerprint|seed|parent_id", little-endian, with the
    shared prefix hashed once (copying a hasher is cheaper)."""
    prefix = hashlib.blake2b(f"{fingerprint}|{seed}|".encode(), digest_size=8)
    digests = []
    for pid in parent_ids:
        h = prefix.copy()
        h.update(pid.encode())
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype="<u8")


def splitmix64_uniforms(keys: np.ndarray, k: int) -> np.ndarray:
    """(N, k) float64 uniforms in [0, 1): row i is the first k outputs of SplitMix64 seeded with keys[i]."""
    z = keys.astype(np.uint64)[:, None] + np.arange(1, k + 1, dtype=np.uint64) * _GAMMA  # wraps mod 2^64
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # the top 53 bits: every double exact


def draw_uniforms(policy: AugmentPolicy, seed: int, parent_ids: Sequence[str]) -> np.ndarray:
    """All uniforms of every row, (N, K) float64 in [0, 1); row i depends only on (policy, seed, parent_ids[i]).

    Each op owns a block of `op.draws` consecutive columns, in the policy's order.
    """
    k = sum(op.draws for op in policy.ops)
    if k == 0 or not parent_ids:
        return np.zeros((len(parent_ids), k))
    return splitmix64_uniforms(_row_keys(policy.fingerprint(), seed, parent_ids), k)
