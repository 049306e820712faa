"""Ingest one landing drop: decode, identify, store and describe every file, reject the rest with a reason.

Streaming: items flow through a bounded window of worker batches, so peak memory depends on the batch size,
not on the number of files in the drop. Decoding and hashing run in worker processes (one per core).

No file can stop a drop: whatever reading, decoding or hashing one file raises becomes a rejection row with
its reason, and a worker process that dies (a decoder crash, the kernel's out-of-memory killer) costs only the
file it was on: the chunks it took down with it are re-run one file at a time in a fresh worker, and the file
that kills that one too is rejected. Only our own infrastructure failing (the store, the warehouse) fails the
run, leaving the previous partition in place.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

from PIL import Image

from synthdata.io.imageio import (
    FORMAT_EXTENSION,
    DecodeLimits,
    ImageRejected,
    decode_image,
    describe_error,
    file_sha256,
    file_too_large,
)
from synthdata.io.sources import SourceItem, iter_drop
from synthdata.io.store import BlobStore

# Decoded pixels a worker holds while it waits to hash them in one batch: a chunk of small images is hashed in
# one call, while large ones (decoded reduced, up to DecodeLimits.decode_pixels each) are hashed a few at a time.
_HASH_BATCH_PIXELS = 16_000_000

WORKER_DIED = "the worker process died while decoding this file (a decoder crash, or killed for memory)"


@dataclass
class IngestBatch:
    accepted: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    reduced: int = 0  # accepted images decoded reduced (larger than DecodeLimits.decode_pixels)

    def extend(self, other: IngestBatch) -> None:
        self.accepted.extend(other.accepted)
        self.rejected.extend(other.rejected)
        self.reduced += other.reduced


@dataclass
class IngestStats:
    accepted: int = 0
    rejected: int = 0
    reduced: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, batch: IngestBatch) -> None:
        self.accepted += len(batch.accepted)
        self.rejected += len(batch.rejected)
        self.reduced += batch.reduced
        for r in batch.rejected:
            kind = r["reason"].split(":")[0].split(" (")[0]
            self.reasons[kind] = self.reasons.get(kind, 0) + 1


def _rejection(item: SourceItem, reason: str) -> dict:
    return {"source_path": item.source_path, "label": item.label, "reason": reason}


def _read(item: SourceItem, limits: DecodeLimits) -> bytes:
    if item.data is not None:
        return item.data
    assert item.path is not None
    try:
        with open(item.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_file_bytes:  # judged before reading: holding the bytes is the cost to avoid
                raise ImageRejected(file_too_large(size, limits))
            return f.read()
    except FileNotFoundError:
        raise ImageRejected("file vanished during scan") from None
    except IsADirectoryError:
        raise ImageRejected("not a regular file (a folder with an image extension)") from None
    except OSError as e:
        raise ImageRejected(f"unreadable file: {e.strerror or e}") from None


@lru_cache(maxsize=4)
def _store(root: str) -> BlobStore:
    """One store per worker process, so its record of folders already made lasts across batches."""
    return BlobStore(root)


def _add_hashes(rows: list[dict], images: list[Image.Image], out: IngestBatch) -> None:
    """Give each row its hashes (pHash pair, shift hashes, pHash fragility), batched; a batch that fails is redone
    image by image, and an image whose hash still fails is rejected (its stored original stays: content-addressed,
    harmless)."""
    from synthdata.dedup.phash import ImageHashes, image_hashes, lowfreq_bytes, thumb_bytes
    from synthdata.dedup.shift_hash import stored

    if not rows:
        return
    def rows_of(h: ImageHashes) -> list[tuple]:
        return list(zip(h.phash.tolist(), h.phash2.tolist(), stored(h.shifts), h.fragile_bits.tolist(),
                        map(lowfreq_bytes, h.lowfreq), map(thumb_bytes, h.thumbs, h.lowfreq, h.fragile_bits)))  # fmt: skip

    try:
        hashed = rows_of(image_hashes(images))
    except Exception:  # one odd image must not take the chunk's hashes with it
        hashed = []
        for img in images:
            try:
                hashed += rows_of(image_hashes([img]))
            except Exception as e:
                hashed.append(describe_error(e))
    for row, hashes in zip(rows, hashed):
        if isinstance(hashes, str):
            reason = f"perceptual hash failed: {hashes}"
            out.rejected.append({"source_path": row["source_path"], "label": row["label"], "reason": reason})
            continue
        (row["phash"], row["phash2"], row["shift_hashes"], row["phash_fragile_bits"], row["lowfreq"],
         row["thumb32"]) = hashes
        out.accepted.append(row)


def process_items(items: list[SourceItem], limits: DecodeLimits, store_root: str | None) -> IngestBatch:
    """Decode, hash, (p)hash and store a batch of items. Runs in a worker process; returns plain rows.

    Reading, decoding and hashing errors of any type become rejections; a store error propagates (it is ours,
    not the file's). Rows keep source order within accepted and within rejected.
    """
    store = _store(store_root) if store_root else None
    out = IngestBatch()
    rows: list[dict] = []
    images: list[Image.Image] = []
    pending_pixels = 0
    for item in items:
        if item.rejection is not None:
            out.rejected.append(_rejection(item, item.rejection))
            continue
        try:
            data = _read(item, limits)
            img = decode_image(data, limits)
        except ImageRejected as e:
            out.rejected.append(_rejection(item, e.reason))
            continue
        except Exception as e:  # decode_image catches its own; this is anything else on the way
            out.rejected.append(_rejection(item, f"unexpected error reading the file: {describe_error(e)}"))
            continue
        key = BlobStore.key_for(img.image_id, FORMAT_EXTENSION.get(img.format, "bin"))
        if store is not None:
            store.put(key, data)  # the original bytes, untouched
        out.reduced += img.scale > 1
        images.append(img.image)
        pending_pixels += img.image.width * img.image.height
        rows.append(
            {
                "image_id": img.image_id,
                "file_sha256": file_sha256(data),
                "source_path": item.source_path,
                "label": item.label,
                "width": img.width,
                "height": img.height,
                "mode": img.image.mode,
                "original_mode": img.original_mode,
                "format": img.format,
                "n_bytes": len(data),
                "blob_key": key,
            }
        )
        del data, img
        if pending_pixels > _HASH_BATCH_PIXELS:
            _add_hashes(rows, images, out)
            rows, images, pending_pixels = [], [], 0
    _add_hashes(rows, images, out)
    return out


def _chunks(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _prepend(head: list[list[SourceItem]], rest: Iterator[list[SourceItem]]) -> Iterator[list[SourceItem]]:
    yield from head
    yield from rest


Worker = Callable[[list[SourceItem], DecodeLimits, str | None], IngestBatch]


class _Pool:
    """A spawned process pool that survives the death of a worker (see the module docstring)."""

    def __init__(self, workers: int, worker: Worker, limits: DecodeLimits, store_root: str | None) -> None:
        self.workers, self.worker, self.args = workers, worker, (limits, store_root)
        self.pool = self._start(workers)
        self.solo: ProcessPoolExecutor | None = None  # one worker, for re-running suspects file by file
        self.broken = False  # a submit found the pool broken: the window must be recovered before going on

    @staticmethod
    def _start(workers: int) -> ProcessPoolExecutor:
        # spawn, not fork: the caller may be a threaded Dagster process, and fork copies held locks.
        return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))

    def submit(self, chunk: list[SourceItem]) -> Future[IngestBatch]:
        try:
            return self.pool.submit(self.worker, chunk, *self.args)
        except BrokenProcessPool as e:
            # A worker died since the last result was read, and a broken pool takes no more work. The chunk
            # joins the window as failed (it never ran), and the caller drains the window at once: results()
            # recovers it with the chunks the dead worker took down.
            self.broken = True
            failed: Future[IngestBatch] = Future()
            failed.set_exception(e)
            return failed

    def results(self, window: deque[tuple[list[SourceItem], Future[IngestBatch]]], keep: int) -> Iterator[IngestBatch]:
        """Yield the oldest results until `keep` chunks remain in flight, in submission order."""
        while len(window) > keep:
            try:
                batch = window[0][1].result()
            except BrokenProcessPool:
                yield from self._recover(window)
                continue
            window.popleft()
            yield batch

    def _recover(self, window: deque[tuple[list[SourceItem], Future[IngestBatch]]]) -> Iterator[IngestBatch]:
        """A worker died: keep what finished, re-run every chunk it took down file by file, then go on."""
        lost = list(window)
        window.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool, self.broken = self._start(self.workers), False
        for chunk, future in lost:
            finished = future.done() and not future.cancelled() and future.exception() is None
            yield future.result() if finished else self._one_by_one(chunk)

    def _one_by_one(self, chunk: list[SourceItem]) -> IngestBatch:
        out = IngestBatch()
        for item in chunk:
            if self.solo is None:
                self.solo = self._start(1)
            try:
                future = self.solo.submit(self.worker, [item], *self.args)
            except BrokenProcessPool:  # the worker died idle, after its last result: this file never ran
                self._replace_solo()
                future = self.solo.submit(self.worker, [item], *self.args)
            try:
                out.extend(future.result())
            except BrokenProcessPool:
                self._replace_solo()
                out.rejected.append(_rejection(item, WORKER_DIED))
        return out

    def _replace_solo(self) -> None:
        self.solo.shutdown(wait=True)
        self.solo = self._proven_worker()

    def _proven_worker(self) -> ProcessPoolExecutor:
        """A fresh single worker that has survived an empty chunk, to go on with. Blame the file only if one
        does; otherwise the fault is ours (the workers cannot start at all) and rejecting every file for it
        would hide it."""
        solo = self._start(1)
        try:
            solo.submit(self.worker, [], *self.args).result()
        except BrokenProcessPool:
            solo.shutdown(wait=True)
            raise RuntimeError("ingest worker processes die before doing any work: see their stderr") from None
        return solo

    def close(self) -> None:
        for pool in (self.pool, self.solo):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def decode_limits(store: BlobStore | None, limits: DecodeLimits | None) -> DecodeLimits:
    """The limits an ingest decodes under: the store's, which every later stage decodes stored images under
    too. Other limits only without a store (tests, benchmarks); with one, they must be the store's."""
    if store is None:
        return limits if limits is not None else DecodeLimits()
    if limits is not None and limits != store.limits:
        raise ValueError(
            f"ingest limits {limits} differ from the store's {store.limits}: later stages decode stored images "
            "under the store's, so set them there (BlobStore(root, limits); the image_store resource in Dagster)"
        )
    return store.limits


def ingest_items(
    items: Iterable[SourceItem],
    store: BlobStore | None,
    limits: DecodeLimits | None = None,
    workers: int | None = None,
    chunk_size: int = 256,
    in_flight_per_worker: int = 2,
    worker: Worker = process_items,
) -> Iterator[IngestBatch]:
    """Yield processed batches in source order, decoded under `decode_limits(store, limits)`. `workers=0`
    processes in this process (no pool).

    `worker` is what a worker process runs on a chunk (module-level, so spawned processes can import it);
    tests pass one that crashes its process on a chosen file, the way a decoder segfault would.
    A drop of one chunk is decoded in one worker process too: starting it costs about a second, and a decoder
    crash in this process would end the step and lose the drop (workers=0 accepts that, for debugging).
    """
    limits = decode_limits(store, limits)
    store_root = str(store.root) if store is not None else None
    workers = (os.cpu_count() or 1) if workers is None else workers
    chunks = _chunks(items, chunk_size)
    if workers <= 0:
        for chunk in chunks:
            yield worker(chunk, limits, store_root)
        return
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    head = [c for c in (first, second) if c is not None]
    pool = _Pool(workers if second is not None else 1, worker, limits, store_root)
    try:
        window: deque[tuple[list[SourceItem], Future[IngestBatch]]] = deque()
        limit = max(1, workers * in_flight_per_worker)
        for chunk in _prepend(head, chunks):
            window.append((chunk, pool.submit(chunk)))
            yield from pool.results(window, keep=0 if pool.broken else limit - 1)
        yield from pool.results(window, keep=0)
    finally:
        pool.close()


@lru_cache(maxsize=1)
def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS.

    Each batch arrives as a freshly unpickled buffer of a different size; glibc keeps the freed pages, so the
    parent's RSS would grow with the number of images although its Python heap does not. Trimming after every
    batch keeps it flat (benchmarks/ingest_speed.py --memory; figures in docs/benchmarks.md).
    """
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


def ingest_drop(
    drop_dir: Path,
    landing_root: Path,
    store: BlobStore | None,
    limits: DecodeLimits | None = None,
    workers: int | None = None,
    chunk_size: int = 256,
    on_batch: Callable[[IngestBatch], None] | None = None,
) -> IngestStats:
    """Ingest a drop folder, handing each processed batch to `on_batch` (e.g. a warehouse writer)."""
    stats = IngestStats()
    start = time.perf_counter()
    for batch in ingest_items(iter_drop(drop_dir, landing_root), store, limits, workers, chunk_size):
        stats.add(batch)
        if on_batch is not None:
            on_batch(batch)
        del batch
        release_free_memory()
    stats.seconds = time.perf_counter() - start
    return stats


class _RowBuffer:
    """Collects worker rows and appends them to a warehouse table through Arrow, a few thousand at a time.

    One INSERT per `flush_rows` rows instead of one per worker batch, and Arrow instead of a pandas frame: the
    per-row cost lands in the ingest's main process, whose CPU the decoding workers need. Memory stays bounded
    by `flush_rows`.
    """

    def __init__(self, con, table: str, partition_date: str, run_id: str | None, ingest_id: str,
                 flush_rows: int = 2048) -> None:  # fmt: skip
        self.con, self.table, self.flush_rows = con, table, flush_rows
        self.constants = {"partition_date": partition_date, "run_id": run_id, "ingest_id": ingest_id}
        self.rows: list[dict] = []
        self.schema = None  # the table's own column types, read at the first flush

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa

        from synthdata.io.warehouse import arrow_schema, insert_df

        if self.schema is None:  # typed as the table is, so Arrow never guesses (a uint64 hash overflows a guess)
            self.schema = arrow_schema(self.con, self.table, self.rows[0])
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        for name, value in self.constants.items():
            # partition_date goes in as text; DuckDB casts it to DATE on insert.
            table = table.append_column(name, pa.array([value] * len(self.rows), pa.string()))
        insert_df(self.con, self.table, table)
        self.rows = []


def ingest_partition(
    con,
    partition_date: str,
    drop_dir: Path,
    landing_root: Path,
    store: BlobStore | None,
    limits: DecodeLimits | None = None,
    workers: int | None = None,
    chunk_size: int = 256,
    run_id: str | None = None,
    on_batch: Callable[[IngestBatch], None] | None = None,
) -> IngestStats:
    """Replace one partition of `raw_images` / `rejected_images` with a fresh ingest of its drop.

    Rows are written batch by batch under a new ingest id, invisible to readers (the views show only the
    partition's committed ingest); one small transaction then makes them the partition's rows and drops the
    previous ones. Readers see the old partition or the new one, never a mix, memory stays bounded by the
    batch size, and a failure leaves the previous partition untouched.
    """
    import uuid

    from synthdata.io.warehouse import transaction

    ingest_id = uuid.uuid4().hex
    # Rows of ingests that never committed (a crash) are invisible; clear them before adding more.
    for table in ("raw_image_rows", "rejected_rows"):
        con.execute(
            f"""DELETE FROM {table} WHERE partition_date = ? AND ingest_id IS DISTINCT FROM
                (SELECT ingest_id FROM raw_partitions WHERE partition_date = ?)""",
            [partition_date, partition_date],
        )

    accepted = _RowBuffer(con, "raw_image_rows", partition_date, run_id, ingest_id)
    rejected = _RowBuffer(con, "rejected_rows", partition_date, run_id, ingest_id)

    def write(batch: IngestBatch) -> None:
        accepted.add(batch.accepted)
        rejected.add(batch.rejected)
        if on_batch is not None:
            on_batch(batch)

    try:
        stats = ingest_drop(drop_dir, landing_root, store, limits, workers, chunk_size, on_batch=write)
        accepted.flush()
        rejected.flush()
        with transaction(con):
            con.execute(
                "INSERT OR REPLACE INTO raw_partitions (partition_date, ingest_id, run_id) VALUES (?, ?, ?)",
                [partition_date, ingest_id, run_id],
            )
            for table in ("raw_image_rows", "rejected_rows"):
                con.execute(f"DELETE FROM {table} WHERE partition_date = ? AND ingest_id <> ?", [partition_date, ingest_id])
    except BaseException:
        for table in ("raw_image_rows", "rejected_rows"):
            con.execute(f"DELETE FROM {table} WHERE ingest_id = ?", [ingest_id])
        raise
    return stats
