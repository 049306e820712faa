"""Ingest + exact + near dedup throughput and peak memory, against a plain loop, in one run.

    python benchmarks/ingest_speed.py                 # throughput at --n images (default 20000), --repeat runs (3)
    python benchmarks/ingest_speed.py --memory        # peak RSS at 10k and 100k images (bounded memory)
    python benchmarks/ingest_speed.py --large         # decode time and peak RSS of one 168 MP image per format

Baseline (same files, same run): a plain single-process loop of Pillow decode + hashlib SHA-256 of the pixels
+ imagehash.phash (the hashes exact and near dedup need). Ours: `ingest_partition` (parallel decode, pixel
SHA-256, batched pHash, content-addressed store, DuckDB rows) followed by `curate` (exact dedup + banded
near-duplicate search + pixel confirmation). Each side runs in its own process so peak RSS is its own.
Images are crops of scikit-image's bundled photographs (PNG and JPEG, 24..64 px), 5% planted copies.
Two drops of --n files each: the first calibrates the near-duplicate rule (once per warehouse); the second is
the steady state (rule stored and tested on the drop's images, new images compared against everything),
timed against the plain loop over its own files.

The box's noise (its disk above all: writing 10,000 small files takes 0.3 s or 4 s) moves single runs by a
third, so each side runs --repeat times on the same files and the medians are printed, with CPU per image:
ours (workers included) against the loop's, and the wall speed-up that much CPU allows at best on this
machine's cores.

Also printed, to show where the time goes: our ingest without writing originals to the store (file creation
on the benchmark's disk), our CPU split between the parent and the workers, and the share of the plain loop
spent reading + decoding (work both sides must do, so it caps any speed-up at cores / share). With
``--memory``: the same ingest without warehouse writes, to separate our memory from DuckDB's. Worker RSS is
sampled from /proc (getrusage's ru_maxrss is inherited across fork + exec, so it would report the parent's).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _photos() -> list[np.ndarray]:
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
             "coins", "moon", "page", "brick", "grass", "gravel", "retina", "cat", "horse", "eagle"]  # fmt: skip
    out = []
    for name in names:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # an image this scikit-image does not ship
            continue
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) / max(float(img.max()), 1.0))).astype(np.uint8)
        out.append(img)
    return out


def make_drop(folder: Path, n: int, seed: int = 0) -> None:
    """n files of real-photo content, distinct by position, scale, orientation and exposure; 5% exact copies."""
    from PIL import Image

    photos = _photos()
    rng = np.random.default_rng(seed)
    made: list[bytes] = []
    for i in range(n):
        label = f"c{i % 10}"
        path = folder / label / f"{i:07d}.{'jpg' if i % 3 == 0 else 'png'}"
        if i % 20 == 19 and made:  # a planted exact copy of an earlier file
            payload = made[int(rng.integers(len(made)))]
            path = path.with_suffix(".png")
        else:
            photo = photos[int(rng.integers(len(photos)))]
            side = int(rng.integers(24, 65))
            src = int(side * rng.uniform(1.0, 6.0))  # sample a region up to 6x larger, then shrink
            src = min(src, photo.shape[0] - 1, photo.shape[1] - 1)
            y, x = int(rng.integers(0, photo.shape[0] - src)), int(rng.integers(0, photo.shape[1] - src))
            img = Image.fromarray(photo[y : y + src, x : x + src]).resize((side, side), Image.Resampling.BILINEAR)
            img = img.rotate(90 * int(rng.integers(4)))
            arr = np.asarray(img).astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            if i % 2:
                img = img.convert("L")
            buf = io.BytesIO()
            img.save(buf, format="JPEG" if path.suffix == ".jpg" else "PNG", quality=90)
            payload = buf.getvalue()
            if len(made) < 5000:
                made.append(payload)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)


def _status_mb(pid: int | str, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


class WorkerMemory:
    """Samples the RSS of this process's children every few ms, from /proc.

    getrusage(RUSAGE_CHILDREN).ru_maxrss is no use here: Linux carries a process's RSS high-water mark across
    fork + exec, so every spawned worker would report at least the parent's RSS at the moment it was started.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        import threading

        self.peak = 0.0
        # A daemon thread: it samples until the benchmark process exits.
        threading.Thread(target=self._run, args=(interval_s,), daemon=True).start()

    def _children(self) -> list[str]:
        pids: list[str] = []
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as f:
                    pids.extend(f.read().split())
            except FileNotFoundError:
                continue
        return pids

    def _run(self, interval_s: float) -> None:
        while True:
            time.sleep(interval_s)
            for pid in self._children():
                # Between fork and exec a child still maps its parent's pages: count workers once they run.
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"spawn_main" not in f.read():
                            continue
                except FileNotFoundError:
                    continue
                self.peak = max(self.peak, _status_mb(pid, "VmRSS"))


_WORKERS: WorkerMemory | None = None


def peak_rss_mb() -> dict[str, float]:
    """Peak RSS of this process (VmHWM: its own, not inherited) and of its largest worker so far."""
    if sys.platform.startswith("linux"):
        own = _status_mb("self", "VmHWM")
    else:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = _WORKERS.peak if _WORKERS is not None else 0.0
    return {"peak_rss_mb": round(own, 1), "peak_worker_rss_mb": round(worker, 1)}


def run_baseline(drop: Path) -> dict:
    import hashlib

    import imagehash
    from PIL import Image

    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    exact: dict[str, str] = {}
    hashes = []
    for path in sorted(drop.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        img = Image.open(io.BytesIO(data))
        img.load()
        digest = hashlib.sha256(img.tobytes()).hexdigest()
        exact.setdefault(digest, str(path))
        hashes.append(int(str(imagehash.phash(img)), 16))
        n += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # The floor both sides share: reading and decoding the same files, nothing else.
    start = time.perf_counter()
    for path in sorted(drop.rglob("*")):
        if path.is_file():
            Image.open(io.BytesIO(path.read_bytes())).load()
    decode_seconds = time.perf_counter() - start
    return {"images": n, "seconds": seconds, "cpu_seconds": cpu, "decode_seconds": decode_seconds, "unique": len(exact),
            **peak_rss_mb()}  # fmt: skip


def _rusage_cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds() -> dict[str, float]:
    return {"main_cpu_s": round(_rusage_cpu(resource.RUSAGE_SELF), 2),
            "workers_cpu_s": round(_rusage_cpu(resource.RUSAGE_CHILDREN), 2)}  # fmt: skip


def total_cpu() -> float:
    """CPU seconds of this process and its finished children (the ingest workers, shut down after each ingest)."""
    return _rusage_cpu(resource.RUSAGE_SELF) + _rusage_cpu(resource.RUSAGE_CHILDREN)


def run_without_warehouse(drop: Path, home: Path, workers: int | None) -> dict:
    """The same streaming ingest (decode, hashes, store) with no warehouse writes: our own memory alone."""
    from synthdata.curation.ingest import ingest_drop
    from synthdata.io.store import BlobStore

    start = time.perf_counter()
    stats = ingest_drop(drop, drop.parent, BlobStore(home / "store"), workers=workers)
    seconds = time.perf_counter() - start
    rss = peak_rss_mb()
    return {"images": stats.accepted + stats.rejected, "ingest_seconds": seconds, "ingest_rss": rss, "seconds": seconds, **rss}


def run_ours(drop: Path, home: Path, workers: int | None, dedup: bool = True, store: bool = True,
             later: Path | None = None) -> dict:  # fmt: skip
    from synthdata.curation.curate import curate
    from synthdata.curation.ingest import ingest_partition
    from synthdata.dedup.codec import encoding_of
    from synthdata.io.store import BlobStore
    from synthdata.io.warehouse import connect

    blobs = BlobStore(home / "store") if store else None
    # Decoded under the store's limits, as at ingest; lossy files' encodings from their headers, as the images asset does.
    load = lambda key: np.asarray(blobs.decode(key).image)  # noqa: E731
    encoding = lambda key: encoding_of(blobs.read(key))  # noqa: E731
    con = connect(home / "warehouse.duckdb")
    start, cpu = time.perf_counter(), total_cpu()
    stats = ingest_partition(con, "2024-01-01", drop, drop.parent, blobs, workers=workers)
    t_ingest, cpu_ingest = time.perf_counter() - start, total_cpu() - cpu
    ingest_rss = peak_rss_mb()
    result = {"images": stats.accepted + stats.rejected, "ingest_seconds": t_ingest, "ingest_rss": ingest_rss, **cpu_seconds(),
              "cpu": {"ingest": cpu_ingest}}  # fmt: skip
    if dedup:
        assert blobs is not None
        cur = curate(con, load, load_encoding=encoding)
        result["cpu"]["curate"] = total_cpu() - cpu - cpu_ingest
        result.update(unique=cur.images, exact_duplicates=cur.exact_duplicates, near_duplicates=cur.near_duplicates,
                      candidates=cur.candidates, curate_seconds={k: round(v, 2) for k, v in cur.seconds.items()})  # fmt: skip
    result["seconds"] = time.perf_counter() - start
    if later is not None and dedup:  # a later drop: the rule is stored, new images are compared against all
        start, cpu = time.perf_counter(), total_cpu()
        ingest_partition(con, "2024-01-02", later, later.parent, blobs, workers=workers)
        t_ingest, cpu_ingest = time.perf_counter() - start, total_cpu() - cpu
        cur = curate(con, load, load_encoding=encoding)
        result["later"] = {"ingest_seconds": t_ingest, "seconds": time.perf_counter() - start, "candidates": cur.candidates,
                           "curate_seconds": {k: round(v, 2) for k, v in cur.seconds.items()}, "new": cur.new_compared,
                           "cpu": {"ingest": cpu_ingest, "curate": total_cpu() - cpu - cpu_ingest}}  # fmt: skip
    con.close()
    return {**result, **peak_rss_mb()}


def subprocess_run(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


LARGE_SIZE = (10524, 16000)  # the largest-sided real clip art


def make_large(folder: Path) -> list[Path]:
    """One 168 MP image as a palette PNG (clip art), an RGB PNG and a JPEG (upscaled real pictures)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    art = Image.fromarray(data.logo()).resize(LARGE_SIZE, Image.Resampling.NEAREST).quantize(64)
    art.save(folder / "clip_art_palette.png", compress_level=1)
    del art
    photo = Image.fromarray(data.astronaut()).resize(LARGE_SIZE, Image.Resampling.BILINEAR)
    photo.save(folder / "photo_rgb.png", compress_level=1)
    photo.save(folder / "photo.jpg", quality=90)
    return [folder / n for n in ("clip_art_palette.png", "photo_rgb.png", "photo.jpg")]


def decode_one(path: Path) -> dict:
    """`decode_image` of one file at the default limits, in this (fresh) process: seconds and peak RSS."""
    from synthdata.io.imageio import decode_image

    # /proc, not getrusage: ru_maxrss is inherited from the parent's exec
    data = path.read_bytes()
    before = _status_mb("self", "VmHWM")
    start = time.perf_counter()
    dec = decode_image(data)
    seconds = time.perf_counter() - start
    peak = _status_mb("self", "VmHWM")
    return {"file": path.name, "bytes": len(data), "decoded": list(dec.image.size), "scale": dec.scale,
            "seconds": round(seconds, 2), "peak_over_start_mb": round(peak - before), "start_mb": round(before)}  # fmt: skip


def ingest_line(ours: dict) -> str:
    """Our ingest's throughput, peak memory and CPU split, as each mode prints it."""
    rss = ours["ingest_rss"]
    return (f"  ours ingest: {ours['images'] / ours['ingest_seconds']:8.0f} images/s ({ours['ingest_seconds']:.1f}s), "
            f"peak RSS {rss['peak_rss_mb']} MB main + {rss['peak_worker_rss_mb']} MB per worker; "
            f"CPU {ours['main_cpu_s']}s main + {ours['workers_cpu_s']}s workers")  # fmt: skip


def speed_round(drop: Path, later: Path, home: Path, worker_args: list[str], cores: int, run: int, runs: int) -> dict:
    """One timed run of ours (first drop, then the later one), ours without store writes, and the plain loop on
    each drop, printed; its speed-ups and CPU per image returned."""
    ours = subprocess_run(["--_side", "ours", "--_drop", str(drop), "--_home", str(home / "home"), *worker_args,
                           "--_later", str(later)])  # fmt: skip
    if runs > 1:
        print(f"  run {run + 1} of {runs}:")
    print(ingest_line(ours))
    print(f"  ours ingest + exact + near dedup: {ours['images'] / ours['seconds']:8.0f} images/s "
          f"({ours['seconds']:.1f}s; curate {ours['curate_seconds']}); {ours['unique']} unique, "
          f"{ours['exact_duplicates']} exact + {ours['near_duplicates']} near duplicates, "
          f"{ours['candidates']} candidates; peak RSS {ours['peak_rss_mb']} MB")  # fmt: skip
    bare_run = subprocess_run(["--_side", "ours", "--_no_store", "--_drop", str(drop), "--_home", str(home / "nostore"), *worker_args])
    print(f"  ours ingest without writing originals to the store: {bare_run['images'] / bare_run['ingest_seconds']:8.0f} images/s "
          f"({bare_run['ingest_seconds']:.1f}s; CPU {bare_run['main_cpu_s']}s main + {bare_run['workers_cpu_s']}s workers)")  # fmt: skip
    base = subprocess_run(["--_side", "baseline", "--_drop", str(drop)])
    print(f"  plain loop (decode + sha256 + imagehash.phash): {base['images'] / base['seconds']:8.0f} images/s "
          f"({base['seconds']:.1f}s), peak RSS {base['peak_rss_mb']} MB; {base['unique']} unique by pixel hash")  # fmt: skip
    print(f"  speed-up, ingest + dedup / plain loop: {base['seconds'] / ours['seconds']:.2f}x  (goal >= 3x); "
          f"ingest alone: {base['seconds'] / ours['ingest_seconds']:.2f}x; "
          f"ingest without store writes: {base['seconds'] / bare_run['ingest_seconds']:.2f}x")  # fmt: skip
    # A later drop is judged by the stored rule (calibration is once per warehouse) and its new images are
    # compared against everything already accepted.
    nxt, base2 = ours["later"], subprocess_run(["--_side", "baseline", "--_drop", str(later)])
    print(f"  later drop ({nxt['new']} new images, rule stored, compared against all earlier ones): ingest + dedup "
          f"{base2['images'] / nxt['seconds']:.0f} images/s ({nxt['seconds']:.1f}s; ingest {nxt['ingest_seconds']:.1f}s, "
          f"curate {nxt['curate_seconds']}; {nxt['candidates']} candidates); plain loop on it {base2['seconds']:.1f}s: "
          f"speed-up {base2['seconds'] / nxt['seconds']:.2f}x")  # fmt: skip
    # Reading + decoding is work both sides must do; with it spread over every core and everything else free,
    # the loop could be beaten by at most this much.
    share = base["decode_seconds"] / base["seconds"]
    print(f"  read + decode alone: {base['decode_seconds'] / base['images'] * 1e6:.0f} us/image = {share:.0%} of the loop; "
          f"ceiling on {cores} cores with every other step free: {cores / share:.1f}x")  # fmt: skip
    per_image = lambda cpu, images: {k: v / images * 1e6 for k, v in cpu.items()}  # noqa: E731
    first, second = per_image(ours["cpu"], ours["images"]), per_image(nxt["cpu"], base2["images"])
    return {"first": base["seconds"] / ours["seconds"], "later": base2["seconds"] / nxt["seconds"],
            "ingest": base["seconds"] / ours["ingest_seconds"],
            "loop_cpu_us": (base["cpu_seconds"] + base2["cpu_seconds"]) / (base["images"] + base2["images"]) * 1e6,
            "first_cpu_us": sum(first.values()), "first_cpu_us_parts": first,
            "later_cpu_us": sum(second.values()), "later_cpu_us_parts": second}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--memory", action="store_true", help="peak RSS of our ingest at 10k and 100k images")
    ap.add_argument("--large", action="store_true", help="decode time and peak RSS of one 168 MP image per format")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs on the same files (medians are printed)")
    ap.add_argument("--workdir", default=str(ROOT / ".synthdata" / "bench"), help="scratch folder (a fast local disk)")
    ap.add_argument("--_side", choices=["baseline", "ours", "no_warehouse"], help=argparse.SUPPRESS)
    ap.add_argument("--_drop", help=argparse.SUPPRESS)
    ap.add_argument("--_later", help=argparse.SUPPRESS)
    ap.add_argument("--_home", help=argparse.SUPPRESS)
    ap.add_argument("--_ingest_only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_no_store", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_decode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._decode:
        print(json.dumps(decode_one(Path(args._decode))))
        return
    if args.large:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            for path in make_large(Path(tmp)):
                r = subprocess_run(["--_decode", str(path)])
                print(f"{r['file']:22s} {r['bytes'] / 2**20:6.1f} MB {LARGE_SIZE[0]}x{LARGE_SIZE[1]} -> {r['decoded'][0]}x{r['decoded'][1]} "
                      f"(1/{r['scale']}) in {r['seconds']}s, peak RSS +{r['peak_over_start_mb']} MB over {r['start_mb']} MB")  # fmt: skip
        return
    global _WORKERS
    if args._side in ("ours", "no_warehouse") and sys.platform.startswith("linux"):
        _WORKERS = WorkerMemory()
    if args._side == "baseline":
        print(json.dumps(run_baseline(Path(args._drop))))
        return
    if args._side == "no_warehouse":
        print(json.dumps(run_without_warehouse(Path(args._drop), Path(args._home), args.workers)))
        return
    if args._side == "ours":
        dedup = not (args._ingest_only or args._no_store)
        later = Path(args._later) if args._later else None
        print(json.dumps(run_ours(Path(args._drop), Path(args._home), args.workers, dedup=dedup, store=not args._no_store, later=later)))
        return

    sizes = [10_000, 100_000] if args.memory else [args.n]
    cores = os.cpu_count() or 1
    print(f"cores: {cores}")
    results: dict[int, dict] = {}
    bare: dict[int, dict] = {}
    for n in sizes:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            drop = Path(tmp) / "landing" / "2024-01-01"
            t = time.perf_counter()
            make_drop(drop, n)
            later = drop.parent / "2024-01-02"
            if not args.memory:
                make_drop(later, n, seed=1)
            os.sync()  # let the generator's writes (and any earlier run's deletions) settle before timing
            time.sleep(2)
            print(f"\n{n} files generated in {time.perf_counter() - t:.1f}s")
            worker_args = ["--workers", str(args.workers)] if args.workers else []
            if args.memory:
                bare[n] = subprocess_run(["--_side", "no_warehouse", "--_drop", str(drop), "--_home", str(Path(tmp) / "bare"), *worker_args])
                worker_args.append("--_ingest_only")
                ours = subprocess_run(["--_side", "ours", "--_drop", str(drop), "--_home", str(Path(tmp) / "home"), *worker_args])
                results[n] = ours
                b = bare[n]["ingest_rss"]
                print(ingest_line(ours))
                print(f"  same ingest without warehouse writes: peak RSS {b['peak_rss_mb']} MB main + {b['peak_worker_rss_mb']} MB per worker")
                continue
            rounds = [speed_round(drop, later, Path(tmp) / f"run{r}", worker_args, cores, r, args.repeat)
                      for r in range(args.repeat)]  # fmt: skip
            if args.repeat > 1:
                print(f"\n  median of {args.repeat} runs (range):")
                for key, what in (("first", "first drop"), ("later", "later drop"), ("ingest", "ingest alone")):
                    values = sorted(r[key] for r in rounds)
                    print(f"    speed-up, {what}: {np.median(values):.2f}x ({values[0]:.2f}-{values[-1]:.2f})")
            # CPU is what the box's noise (its disk above all) moves least: ours per image against the loop's, and
            # the wall speed-up that much CPU allows at best, every core busy from start to end.
            loop = np.median([r["loop_cpu_us"] for r in rounds])
            for key, what in (("first_cpu_us", "first drop"), ("later_cpu_us", "later drop")):
                ours_cpu = np.median([r[key] for r in rounds])
                parts = " + ".join(f"{k} {np.median([r[key + '_parts'][k] for r in rounds]):.0f}" for k in rounds[0][key + "_parts"])
                print(f"  CPU per image, {what}: ours {ours_cpu:.0f} us ({parts}) against the loop's {loop:.0f} us: "
                      f"{ours_cpu / loop:.1f}x the loop's CPU, so at most {cores * loop / ours_cpu:.2f}x on {cores} cores")  # fmt: skip
    if args.memory:
        small, large = results[10_000]["ingest_rss"], results[100_000]["ingest_rss"]
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        wratio = large["peak_worker_rss_mb"] / small["peak_worker_rss_mb"]
        bratio = bare[100_000]["ingest_rss"]["peak_rss_mb"] / bare[10_000]["ingest_rss"]["peak_rss_mb"]
        print(f"\npeak RSS 100k / 10k: main {ratio:.2f}x, workers {wratio:.2f}x  (goal <= 1.2x); "
              f"main without warehouse writes {bratio:.2f}x")  # fmt: skip

if __name__ == "__main__":
    main()
