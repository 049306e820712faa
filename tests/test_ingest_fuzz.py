"""No file can stop an ingest: a seeded fuzz drop in every accepted format, and workers that really die.

The corpus is real pictures (skimage's photos and drawings, scikit-learn's digits) encoded in every accepted
format and mode, the odd cases a real drop holds (1x1, 1x4000, 16-bit, CMYK, palette with alpha, animated GIF
and WebP, multi-page TIFF), Parquet rows, and each of them damaged by byte flips, truncation, garbage tails and
header damage. The promise checked: the partition commits, every file is accepted or rejected with a reason,
none is lost or counted twice, and every clean file is accepted.
"""

from __future__ import annotations

import ctypes
import io
import os
import signal
import time
from collections import deque
from concurrent.futures import wait
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthdata.curation.ingest import WORKER_DIED, IngestBatch, _Pool, ingest_items, ingest_partition, process_items
from synthdata.io.imageio import DecodeLimits
from synthdata.io.sources import SourceItem, iter_drop
from synthdata.io.warehouse import connect

MUTATIONS = ("flip", "truncate", "tail", "header")


# --- the corpus --------------------------------------------------------------------------------------------
def real_pictures() -> list[np.ndarray]:
    from skimage import data

    from synthdata.datasets import load_digits_uint8

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.camera(), data.coins(), data.text(),
              data.page(), data.moon(), (data.horse() * 255).astype(np.uint8), data.logo()[..., :3]]  # fmt: skip
    digits = list(load_digits_uint8()[0][:40])
    return photos + digits


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def variants(img: Image.Image, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """One picture in every accepted format, in the modes each format stores."""
    rgb, gray = img.convert("RGB"), img.convert("L")
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (img.height, img.width), dtype=np.uint8)))
    pal = rgb.quantize(16)
    return [
        ("png", encode(rgb, "PNG")), ("png", encode(gray, "PNG")), ("png", encode(rgba, "PNG")),
        ("png", encode(pal, "PNG", transparency=0)),
        ("jpg", encode(rgb, "JPEG", quality=int(rng.integers(60, 96)))), ("jpg", encode(gray, "JPEG")),
        ("jpg", encode(rgb, "JPEG", progressive=True)),
        ("webp", encode(rgb, "WEBP", quality=80)), ("webp", encode(rgba, "WEBP", lossless=True)),
        ("bmp", encode(rgb, "BMP")), ("bmp", encode(pal, "BMP")),
        ("tif", encode(rgb, "TIFF", compression="tiff_deflate")), ("tif", encode(gray, "TIFF", compression="tiff_lzw")),
        ("tif", encode(rgb, "TIFF", compression="packbits")), ("tif", encode(rgb, "TIFF", compression="jpeg")),
        ("gif", encode(pal, "GIF")), ("gif", encode(gray, "GIF")),
    ]  # fmt: skip


def odd_files(picture: np.ndarray) -> dict[str, bytes]:
    """The shapes and modes a real drop holds that clean photos do not."""
    rgb = Image.fromarray(picture).convert("RGB").resize((48, 40))
    frames = [rgb.rotate(a) for a in (0, 90, 180)]
    deep = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)  # mode I;16
    pal_alpha = rgb.quantize(8)
    return {
        "one_pixel.png": encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"),
        "one_pixel.gif": encode(Image.new("L", (1, 1), 7), "GIF"),
        "line_1x4000.png": encode(Image.new("L", (1, 4000), 128), "PNG"),
        "deep16.png": encode(deep, "PNG"),
        "deep16.tif": encode(deep, "TIFF"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "cmyk.tif": encode(rgb.convert("CMYK"), "TIFF"),
        "palette_alpha.png": encode(pal_alpha, "PNG", transparency=bytes(range(0, 256, 32))),
        "palette_alpha.gif": encode(pal_alpha, "GIF", transparency=3),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "animated.webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100),
        "pages.tif": encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "banner_816x33.png": encode(rgb.resize((816, 33)), "PNG"),
    }


def mutate(data: bytes, how: str, rng: np.random.Generator) -> bytes:
    raw = bytearray(data)
    if how == "flip":
        for pos in rng.integers(0, len(raw), int(rng.integers(1, 9))):
            raw[pos] ^= int(rng.integers(1, 256))
    elif how == "truncate":
        raw = raw[: int(rng.integers(0, len(raw)))]
    elif how == "tail":
        raw += rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
    else:  # header: the first bytes say what the rest means
        for pos in rng.integers(0, min(len(raw), 64), int(rng.integers(1, 5))):
            raw[pos] = int(rng.integers(0, 256))
    return bytes(raw)


def build_fuzz_drop(drop: Path, n_clean: int, seed: int) -> tuple[set[str], set[str], int]:
    """Write `n_clean` clean files, one damaged copy of each, the odd files and two Parquet files into `drop`.

    Returns the clean files' source paths, the ones the contract says must be rejected (a 1x4000 line), and the
    number of items a correct ingest must account for (files plus Parquet rows).
    """
    rng = np.random.default_rng(seed)
    pictures = real_pictures()
    clean: set[str] = set()
    rejected_by_design: set[str] = set()
    n_items = 0
    rows: list[dict] = []
    i = 0
    while i < n_clean:
        pic = pictures[int(rng.integers(len(pictures)))]
        side = int(rng.integers(8, 65))
        y, x = (int(rng.integers(0, max(1, s - side))) for s in pic.shape[:2])
        crop = Image.fromarray(pic[y : y + side, x : x + side] if min(pic.shape[:2]) > side else pic)
        for ext, data in variants(crop, rng):
            if i >= n_clean:
                break
            how = MUTATIONS[i % len(MUTATIONS)]
            label = f"c{i % 7}"
            (drop / label).mkdir(parents=True, exist_ok=True)
            (drop / label / f"{i:05d}.{ext}").write_bytes(data)
            (drop / label / f"{i:05d}_{how}.{ext}").write_bytes(mutate(data, how, rng))
            clean.add(f"{drop.name}/{label}/{i:05d}.{ext}")
            if i % 10 == 0:  # Parquet rows: the same bytes, clean and damaged, in the Hugging Face layout
                rows += [{"bytes": data, "path": None}, {"bytes": mutate(data, how, rng), "path": None}]
            n_items += 2
            i += 1
    odd = odd_files(pictures[0])
    (drop / "odd").mkdir(parents=True, exist_ok=True)
    for name, data in odd.items():
        (drop / "odd" / name).write_bytes(data)
        (drop / "odd" / f"damaged_{name}").write_bytes(mutate(data, "flip", rng))
        clean.add(f"{drop.name}/odd/{name}")
    rejected_by_design.add(f"{drop.name}/odd/line_1x4000.png")
    n_items += 2 * len(odd)
    rows.append({"bytes": None, "path": None})
    table = pa.table({"image": rows, "label": [int(k % 3) for k in range(len(rows))]})
    pq.write_table(table, drop / "rows.parquet")
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    whole = buf.getvalue().to_pybytes()
    (drop / "broken.parquet").write_bytes(whole[: len(whole) // 2])  # footer gone: rejected as one item
    n_items += len(rows) + 1
    return clean - rejected_by_design, rejected_by_design, n_items


# --- the fuzz runs -----------------------------------------------------------------------------------------
def run_fuzz(tmp_path: Path, n_clean: int, seed: int) -> None:
    from synthdata.io.store import BlobStore

    landing = tmp_path / "landing"
    drop = landing / "2024-09-01"
    clean, must_reject, n_items = build_fuzz_drop(drop, n_clean, seed)
    con = connect(tmp_path / "w.duckdb")
    stats = ingest_partition(con, "2024-09-01", drop, landing, BlobStore(tmp_path / "store"), workers=2, chunk_size=64)

    accepted = [r[0] for r in con.execute("SELECT source_path FROM raw_images").fetchall()]
    rejected = dict(con.execute("SELECT source_path, reason FROM rejected_images").fetchall())
    assert stats.accepted + stats.rejected == n_items == len(accepted) + len(rejected)
    assert len(set(accepted)) == len(accepted) and not set(accepted) & set(rejected)  # each file exactly once
    assert clean <= set(accepted), sorted(clean - set(accepted))[:5]
    for path in must_reject:
        assert "max_aspect=" in rejected[path]
    assert all(reason.strip() for reason in rejected.values())
    assert stats.rejected > n_items // 10  # the damage was real: plenty of files could not be decoded


def test_a_fuzzed_drop_in_every_format_commits_with_every_file_accounted_for(tmp_path):
    run_fuzz(tmp_path, n_clean=1500, seed=14)


@pytest.mark.slow
def test_a_large_fuzzed_drop_commits_with_every_file_accounted_for(tmp_path):
    run_fuzz(tmp_path, n_clean=25_000, seed=1414)


# --- workers that die ----------------------------------------------------------------------------------------
# Module-level, so spawned worker processes can import them. Each runs the real worker on its chunk, except
# that it brings its own process down on the chosen file, the way a decoder crash or the kernel would.
def crash_on_marked(items: list[SourceItem], limits: DecodeLimits, store_root: str | None) -> IngestBatch:
    for item in items:
        if "segfault" in item.source_path:
            ctypes.string_at(0)  # a real SIGSEGV: reads address 0
        if "oom_killed" in item.source_path:
            os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
    return process_items(items, limits, store_root)


def starved_of_memory(items: list[SourceItem], limits: DecodeLimits, store_root: str | None) -> IngestBatch:
    """The real worker under an address-space limit: a large decode meets a real MemoryError."""
    import resource

    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + 150 * 2**20, resource.RLIM_INFINITY))
    return process_items(items, limits, store_root)


def write_drop(drop: Path, digits, names: list[str]) -> None:
    images, _, _ = digits
    (drop / "a").mkdir(parents=True)
    for i, name in enumerate(names):
        (drop / "a" / name).write_bytes(encode(Image.fromarray(images[i]), "PNG"))


def test_a_worker_that_dies_costs_only_the_file_it_was_on(landing, digits):
    drop = landing / "2024-09-02"
    names = [f"{i:02d}.png" for i in range(30)]
    names[5], names[17] = "05_segfault.png", "17_oom_killed.png"
    write_drop(drop, digits, names)
    items = list(iter_drop(drop, landing))
    batches = list(ingest_items(items, None, workers=2, chunk_size=4, worker=crash_on_marked))

    out = IngestBatch()
    for b in batches:
        out.extend(b)
    assert [r["source_path"] for r in out.rejected] == ["2024-09-02/a/05_segfault.png", "2024-09-02/a/17_oom_killed.png"]
    assert {r["reason"] for r in out.rejected} == {WORKER_DIED}
    survivors = [i.source_path for i in items if "segfault" not in i.source_path and "oom" not in i.source_path]
    assert [r["source_path"] for r in out.accepted] == survivors  # every other file, in source order


def test_a_worker_death_noticed_when_the_next_chunk_is_submitted_costs_only_its_file(landing, digits):
    """The race behind a flaky CI run: a worker dies after the last result was read, so the next submit meets a
    broken pool (BrokenProcessPool from submit, not from a result). That chunk never ran: it is recovered with
    the rest of the window, and only the file the worker died on is rejected."""
    drop = landing / "2024-09-03"
    names = [f"{i:02d}.png" for i in range(8)]
    names[1] = "01_segfault.png"
    write_drop(drop, digits, names)
    items = list(iter_drop(drop, landing))
    pool = _Pool(1, crash_on_marked, DecodeLimits(), None)
    try:
        window = deque([(items[:4], pool.submit(items[:4]))])
        wait([window[0][1]])  # the worker is dead, and the pool knows it
        window.append((items[4:], pool.submit(items[4:])))  # before: BrokenProcessPool raised here
        assert pool.broken
        out = IngestBatch()
        for batch in pool.results(window, keep=0):
            out.extend(batch)
        assert not pool.broken and not window
    finally:
        pool.close()
    assert [(r["source_path"], r["reason"]) for r in out.rejected] == [("2024-09-03/a/01_segfault.png", WORKER_DIED)]
    assert [r["source_path"] for r in out.accepted] == [i.source_path for i in items if "segfault" not in i.source_path]


def test_a_worker_that_died_idle_costs_no_file(landing, digits):
    """Re-running suspects file by file: a single worker killed while idle (after its last result, as the
    out-of-memory killer may) is noticed when the next file is submitted. That file never ran: it is run on a
    fresh worker, not rejected as the one the worker died on."""
    drop = landing / "2024-09-04"
    write_drop(drop, digits, ["00.png", "01.png"])
    items = list(iter_drop(drop, landing))
    pool = _Pool(1, crash_on_marked, DecodeLimits(), None)
    try:
        pool.solo = pool._start(1)
        pool.solo.submit(crash_on_marked, [], DecodeLimits(), None).result()  # a started, idle worker
        for pid in list(pool.solo._processes):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not pool.solo._broken and time.monotonic() < deadline:  # until the executor has noticed
            time.sleep(0.01)
        assert pool.solo._broken
        out = pool._one_by_one(items)
    finally:
        pool.close()
    assert out.rejected == []
    assert [r["source_path"] for r in out.accepted] == [i.source_path for i in items]


def test_a_drop_of_one_chunk_is_decoded_in_a_worker_so_a_crash_costs_only_its_file(landing, digits):
    """Small drops too: decoded in this (the step's) process, the segfault would end the step and the drop."""
    drop = landing / "2024-09-05"
    write_drop(drop, digits, ["00.png", "01_segfault.png", "02.png"])
    out = IngestBatch()
    for b in ingest_items(iter_drop(drop, landing), None, workers=2, chunk_size=256, worker=crash_on_marked):
        out.extend(b)
    assert [(r["source_path"], r["reason"]) for r in out.rejected] == [("2024-09-05/a/01_segfault.png", WORKER_DIED)]
    assert [r["source_path"] for r in out.accepted] == ["2024-09-05/a/00.png", "2024-09-05/a/02.png"]


def test_without_recovery_the_first_dead_worker_ends_the_drop(landing, digits):
    """What the recovery exists for: a plain process pool loses the whole drop to one crash."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    drop = landing / "2024-09-03"
    write_drop(drop, digits, ["00.png", "01_segfault.png", "02.png", "03.png"])
    items = list(iter_drop(drop, landing))
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(crash_on_marked, [item], DecodeLimits(), None) for item in items]
        with pytest.raises(BrokenProcessPool):
            [f.result() for f in futures]


def test_a_decode_that_runs_out_of_memory_is_rejected_and_the_rest_go_on(landing, digits):
    drop = landing / "2024-09-04"
    write_drop(drop, digits, ["00.png", "01.png"])
    big = Image.fromarray(real_pictures()[0]).resize((6000, 6000))  # 36 MP: ~144 MB decoded, over the limit
    (drop / "a" / "02_large.png").write_bytes(encode(big, "PNG", compress_level=1))
    batches = list(ingest_items(iter_drop(drop, landing), None, workers=2, chunk_size=1, worker=starved_of_memory))
    out = IngestBatch()
    for b in batches:
        out.extend(b)
    assert [r["source_path"] for r in out.accepted] == ["2024-09-04/a/00.png", "2024-09-04/a/01.png"]
    assert len(out.rejected) == 1 and out.rejected[0]["reason"].startswith("out of memory: decoding 6000x6000 PNG")


def test_a_parquet_file_broken_in_one_row_group_keeps_the_others_and_accounts_for_every_row(tmp_path, landing, digits):
    images, labels, _ = digits
    drop = landing / "2024-09-05"
    drop.mkdir(parents=True)
    rows = [{"bytes": encode(Image.fromarray(images[i]), "PNG"), "path": None} for i in range(30)]
    path = drop / "train.parquet"
    pq.write_table(pa.table({"image": rows, "label": [int(v) for v in labels[:30]]}), path, row_group_size=10)
    column = pq.ParquetFile(path).metadata.row_group(1).column(0)
    raw = bytearray(path.read_bytes())
    for k in range(column.data_page_offset + 20, column.data_page_offset + 60):  # damage the second group's page
        raw[k] ^= 0x5A
    path.write_bytes(bytes(raw))

    con = connect(tmp_path / "w.duckdb")
    stats = ingest_partition(con, "2024-09-05", drop, landing, None, workers=0)
    assert (stats.accepted, stats.rejected) == (20, 10)
    rejected = con.execute("SELECT source_path, reason FROM rejected_images ORDER BY 1").fetchall()
    assert [p for p, _ in rejected] == sorted(f"2024-09-05/train.parquet#row={r}" for r in range(10, 20))
    assert all(reason.startswith("unreadable Parquet file: row group 1 broken from row 10") for _, reason in rejected)


def test_a_fuzzed_drop_materializes_raw_images_with_every_file_accounted_for(tmp_path):
    """The issue's failure, as a real materialization: the run succeeds and its metadata accounts for every file."""
    import dagster as dg

    from assets.ingest import raw_images, raw_images_expectations
    from dagster_project.definitions import build_resources
    from synthdata.io.paths import SynthdataPaths

    paths = SynthdataPaths(home=tmp_path, landing=tmp_path / "landing").ensure()
    clean, _, n_items = build_fuzz_drop(paths.landing / "2024-09-06", n_clean=300, seed=7)
    result = dg.materialize(
        [raw_images, raw_images_expectations], partition_key="2024-09-06", resources=build_resources(paths),
        run_config={"ops": {"raw_images": {"config": {"workers": 2, "chunk_size": 32}}}}, raise_on_error=False,
    )  # fmt: skip
    assert result.success
    meta = result.asset_materializations_for_node("raw_images")[0].metadata
    assert meta["accepted"].value + meta["rejected"].value == n_items and meta["accepted"].value >= len(clean)
    check = next(e.event_specific_data for e in result.all_events
                 if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)  # fmt: skip
    # A 1x1 image is data the ingest accepted on purpose: outside the quality resource's sides it warns only.
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
