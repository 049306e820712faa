"""Ingest one landing drop: decode, identify, store and describe every file, reject the rest with a reason.

Streaming: items flow through a bounded window of worker batches, so peak memory depends on the batch size,
not on the number of files in the drop. Decoding and hashing run in worker processes (one per core).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

from synthdata.io.imageio import (
    FORMAT_EXTENSION,
    DecodeLimits,
    ImageRejected,
    decode_image,
    file_sha256,
    image_id,
)
from synthdata.io.sources import SourceItem, iter_drop
from synthdata.io.store import BlobStore


@dataclass
class IngestBatch:
    accepted: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)


@dataclass
class IngestStats:
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, batch: IngestBatch) -> None:
        self.accepted += len(batch.accepted)
        self.rejected += len(batch.rejected)
        for r in batch.rejected:
            kind = r["reason"].split(":")[0].split(" (")[0]
            self.reasons[kind] = self.reasons.get(kind, 0) + 1


def _read(item: SourceItem) -> bytes:
    if item.data is not None:
        return item.data
    assert item.path is not None
    try:
        with open(item.path, "rb") as f:
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


def process_items(items: list[SourceItem], limits: DecodeLimits, store_root: str | None) -> IngestBatch:
    """Decode, hash, (p)hash and store a batch of items. Runs in a worker process; returns plain rows."""
    from synthdata.dedup.phash import phash_and_crop_hashes

    store = _store(store_root) if store_root else None
    out = IngestBatch()
    decoded = []
    for item in items:
        if item.rejection is not None:
            out.rejected.append({"source_path": item.source_path, "label": item.label, "reason": item.rejection})
            continue
        try:
            data = _read(item)
            img = decode_image(data, limits)
        except ImageRejected as e:
            out.rejected.append({"source_path": item.source_path, "label": item.label, "reason": e.reason})
            continue
        iid = image_id(img.image)
        key = BlobStore.key_for(iid, FORMAT_EXTENSION.get(img.format, "bin"))
        if store is not None:
            store.put(key, data)  # the original bytes, untouched
        decoded.append(img.image)
        out.accepted.append(
            {
                "image_id": iid,
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
    if decoded:
        phash, crop_hash = phash_and_crop_hashes(decoded)
        for row, h, h2 in zip(out.accepted, phash, crop_hash):
            row["phash"], row["phash2"] = int(h), int(h2)
    return out


def _chunks(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _prepend(head: list[list[SourceItem]], rest: Iterator[list[SourceItem]]) -> Iterator[list[SourceItem]]:
    yield from head
    yield from rest


def ingest_items(
    items: Iterable[SourceItem],
    store: BlobStore | None,
    limits: DecodeLimits = DecodeLimits(),
    workers: int | None = None,
    chunk_size: int = 256,
    in_flight_per_worker: int = 2,
) -> Iterator[IngestBatch]:
    """Yield processed batches in source order. `workers=0` processes in this process (no pool)."""
    store_root = str(store.root) if store is not None else None
    workers = (os.cpu_count() or 1) if workers is None else workers
    chunks = _chunks(items, chunk_size)
    first = next(chunks, None)
    second = next(chunks, None) if first is not None else None
    if workers <= 0 or second is None:
        # Starting a process pool costs more than processing one chunk here.
        for chunk in (c for c in (first, second) if c is not None):
            yield process_items(chunk, limits, store_root)
        for chunk in chunks:
            yield process_items(chunk, limits, store_root)
        return
    chunks = _prepend([first, second], chunks)
    # spawn, not fork: the caller may be a threaded Dagster process, and fork copies held locks.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        window: list[Future[IngestBatch]] = []
        limit = max(1, workers * in_flight_per_worker)
        for chunk in chunks:
            window.append(pool.submit(process_items, chunk, limits, store_root))
            if len(window) >= limit:
                yield window.pop(0).result()
        for fut in window:
            yield fut.result()


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
    limits: DecodeLimits = DecodeLimits(),
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
    limits: DecodeLimits = DecodeLimits(),
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
