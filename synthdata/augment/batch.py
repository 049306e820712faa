"""The batch as the ops see it: `Plan` while they sample their parameters, `Rows` while their steps apply them.

An op plans against a `Plan` (the batch's shape and device, the records, shared helpers) and returns a `Step`,
a function the engine later calls with a `Rows`: a contiguous range of the batch's rows, which the step reads
and replaces without ever writing the caller's tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from synthdata.augment.policy import AugmentPolicy

# A row-local step works on any contiguous range of rows; a mixing step needs the whole batch.
Step = Callable[["Rows"], None]


class Plan:
    """Per-call state of the planning phase: the batch's shape, the records, and helpers the op planners share."""

    def __init__(self, images: Tensor, soft: Tensor, parent_ids: list[str], policy: AugmentPolicy) -> None:
        self.n, self.c, self.h, self.w = images.shape
        self.center = ((self.w - 1) / 2, (self.h - 1) / 2)
        self.device = images.device
        self.dtype = images.dtype
        # grid_sample needs float32/float64; other float inputs are warped in float32 and cast back.
        self.warp_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
        self.soft = soft
        self.parent_ids = parent_ids
        self.policy = policy
        self.ops_of: list[list[dict[str, Any]]] = [[] for _ in range(self.n)]

    @functools.cached_property
    def id_array(self) -> np.ndarray:
        """parent_ids as an object array (sortable, indexable by row arrays)."""
        ids = np.empty(self.n, dtype=object)
        ids[:] = self.parent_ids
        return ids

    @functools.cached_property
    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows sorted by parent_id, each row's rank): partner choice uses ranks so that it ignores row order."""
        order = np.argsort(self.id_array, kind="stable").astype(np.int64)
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n)
        return order, rank

    def record(self, name: str, idx: np.ndarray, columns: dict[str, np.ndarray], **const: Any) -> None:
        """Append `name` to the record of each row in `idx`, with that row's value of every column.

        Columns are per-row arrays (a 2-D column gives each row a list); `const` values are the same for all.
        At small image sizes the records are a visible share of the whole call, so each column count gets its
        own loop of dict displays, which are cheaper than building each dict from zip.
        """
        if idx.size == 0:
            return
        ops_of, rows = self.ops_of, idx.tolist()
        keys = list(columns)
        cols = [np.asarray(col)[idx].tolist() for col in columns.values()]
        if not keys:
            for i in rows:
                ops_of[i].append({"op": name, "params": {**const}})
        elif len(keys) == 1:
            (k0,) = keys
            for i, a in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, **const}})
        elif len(keys) == 2:
            k0, k1 = keys
            for i, a, b in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, k1: b, **const}})
        elif len(keys) == 3:
            k0, k1, k2 = keys
            for i, a, b, c in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, k1: b, k2: c, **const}})
        elif len(keys) == 4:
            k0, k1, k2, k3 = keys
            for i, a, b, c, d in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, k1: b, k2: c, k3: d, **const}})
        else:
            for i, *vals in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {**dict(zip(keys, vals)), **const}})

    def to_dev(self, a: np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
        """A CPU parameter array as a tensor on the batch's device, in the images' dtype unless told."""
        return torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)

    def box_masks(self, box_yxhw: np.ndarray, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """Each row's integer box (y0, x0, h, w) as 0/1 masks of its rows (N, 1, H, 1) and columns (N, 1, 1, W),
        in the images' dtype unless told.

        Their product is the box; a zero-sized box gives an empty mask.
        """
        b = box_yxhw
        in_y = (np.arange(self.h) >= b[:, 0:1]) & (np.arange(self.h) < b[:, 0:1] + b[:, 2:3])
        in_x = (np.arange(self.w) >= b[:, 1:2]) & (np.arange(self.w) < b[:, 1:2] + b[:, 3:4])
        n = b.shape[0]
        return self.to_dev(in_y, dtype).view(n, 1, self.h, 1), self.to_dev(in_x, dtype).view(n, 1, 1, self.w)


class Rows:
    """Rows [lo, hi) of the batch as the steps see them: their pixels, and whether this call may write them.

    The caller's tensor is read, never written: the first in-place write takes a copy (`writable`), and a step
    that computes a new tensor for every row (a warp of all rows, the colour map) needs no copy at all.
    """

    __slots__ = ("dest", "hi", "lo", "owned", "x")

    def __init__(self, x: Tensor, lo: int, hi: int, owned: bool, dest: Tensor | None = None) -> None:
        self.x, self.lo, self.hi, self.owned = x, lo, hi, owned
        self.dest = dest  # where these rows' result must end up, if not simply in `x`

    def output_buffer(self) -> Tensor | None:
        """`dest`, for a step that writes a whole new tensor, when that does not overwrite its own input.

        Writing the result there directly saves copying it there at the end.
        """
        if self.dest is None or self.x.untyped_storage().data_ptr() == self.dest.untyped_storage().data_ptr():
            return None
        return self.dest

    def writable(self) -> Tensor:
        """The rows as a tensor this call may modify in place."""
        if not self.owned:
            self.x, self.owned = self.x.clone(), True
        return self.x

    def replace(self, x: Tensor) -> None:
        """Adopt a freshly computed tensor for all the rows."""
        self.x, self.owned = x, True

    def get(self, local: np.ndarray) -> Tensor:
        """Rows `local` (indices within this range, sorted, unique), or all of them without a copy."""
        if local.size == self.x.shape[0]:
            return self.x
        return self.x.index_select(0, torch.from_numpy(local).to(self.x.device))

    def put(self, local: np.ndarray, out: Tensor) -> None:
        """Rows `local` become `out`; the other rows stay bit-identical."""
        self.put_many([(local, out)])

    def put_many(self, pieces: list[tuple[np.ndarray, Tensor]]) -> None:
        """For each (local, out), rows `local` become `out` (the pieces' rows are disjoint); others stay as they are.

        Not-owned rows are assembled into a new tensor in one go, reading and writing each row once: writing
        the pieces one by one would first copy all the rows and then overwrite those of every piece.
        """
        m, device = self.x.shape[0], self.x.device
        pieces = [(local, out.to(self.x.dtype)) for local, out in pieces if local.size]
        if len(pieces) == 1 and pieces[0][0].size == m:
            self.replace(pieces[0][1])
            return
        if not self.owned:
            keep = np.ones(m, dtype=bool)
            for local, _ in pieces:
                keep[local] = False
            x = torch.empty_like(self.x)
            if keep.any():
                rest = torch.from_numpy(np.flatnonzero(keep)).to(device)
                _copy_rows_(x, rest, self.x.index_select(0, rest))
            self.x, self.owned = x, True
        for local, out in pieces:
            _copy_rows_(self.x, torch.from_numpy(local).to(device), out)


def _copy_rows_(dst: Tensor, rows: Tensor, src: Tensor) -> None:
    """dst[rows] = src, for whole rows of contiguous tensors, bit for bit.

    index_copy_ moves one element at a time, where index_select copies whole rows. Viewing each row as 16-byte
    complex numbers only reinterprets the bytes (nothing is computed on them) and cuts the moves by 4.
    """

    def in_words(t: Tensor) -> bool:  # contiguous rows of whole 16-byte words, starting on a word
        size = t.element_size()
        return t.is_contiguous() and (t[0].numel() * size) % 16 == 0 and (t.storage_offset() * size) % 16 == 0

    if src.dtype == dst.dtype and in_words(dst) and in_words(src):
        dst = dst.view(dst.shape[0], -1).view(torch.complex128)
        src = src.view(src.shape[0], -1).view(torch.complex128)
    dst.index_copy_(0, rows, src)


class Subset:
    """The rows an op fired on; parameters are stored for those rows only, in row order."""

    def __init__(self, fired: np.ndarray) -> None:
        self.fired = fired
        self.before = np.concatenate([[0], np.cumsum(fired)])  # fired rows before each row

    def within(self, lo: int, hi: int) -> tuple[np.ndarray, slice]:
        """Fired rows of [lo, hi) as indices within it, and the slice of the parameters that belongs to them."""
        return np.flatnonzero(self.fired[lo:hi]), slice(int(self.before[lo]), int(self.before[hi]))
