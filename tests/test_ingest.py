import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthdata.curation.ingest import IngestBatch, ingest_drop
from synthdata.io.sources import iter_drop
from synthdata.io.store import BlobStore
from tests.conftest import png


def run(drop: Path, landing: Path, store: BlobStore | None, workers: int = 0) -> IngestBatch:
    out = IngestBatch()

    def collect(b: IngestBatch) -> None:
        out.accepted.extend(b.accepted)
        out.rejected.extend(b.rejected)

    ingest_drop(drop, landing, store, workers=workers, chunk_size=4, on_batch=collect)
    return out


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_imagefolder_drop_with_bad_files(landing, tmp_path, digits):
    images, labels, _ = digits
    drop = landing / "2024-01-05"
    for i in range(6):
        write(drop / str(labels[i]) / f"{i}.png", png(images[i]))
    write(drop / "3" / "empty.png", b"")
    write(drop / "3" / "notes.png", b"hello")
    write(drop / "3" / "README.md", b"# not data")
    write(drop / "loose.png", png(images[10]))  # unlabeled: directly in the drop
    outside = tmp_path / "secret.png"
    write(outside, png(images[11]))
    os.symlink(outside, drop / "3" / "escape.png")
    os.symlink(drop / "3" / "0.png" if (drop / "3" / "0.png").exists() else drop / "loose.png", drop / "inside_link.png")

    store = BlobStore(tmp_path / "store")
    result = run(drop, landing, store)
    reasons = {r["source_path"]: r["reason"] for r in result.rejected}
    assert reasons["2024-01-05/3/empty.png"] == "empty file (0 bytes)"
    assert reasons["2024-01-05/3/notes.png"].startswith("not an image")
    assert reasons["2024-01-05/3/README.md"].startswith("not an image file extension")
    assert reasons["2024-01-05/3/escape.png"].startswith("symlink escapes the landing root")
    accepted = {r["source_path"]: r for r in result.accepted}
    assert len(accepted) == 8  # 6 labelled + loose + the link that stays inside the root
    assert accepted["2024-01-05/loose.png"]["label"] is None
    assert accepted[f"2024-01-05/{labels[0]}/0.png"]["label"] == str(labels[0])
    # content-addressed: stored once under its id, bytes untouched
    row = accepted[f"2024-01-05/{labels[0]}/0.png"]
    assert store.read(row["blob_key"]) == png(images[0])
    assert row["image_id"] in row["blob_key"]
    assert all(isinstance(r["phash"], int) for r in result.accepted)


def test_parallel_ingest_matches_in_process(landing, tmp_path, digits):
    images, labels, _ = digits
    drop = landing / "2024-02-01"
    for i in range(40):
        write(drop / str(labels[i]) / f"{i:03d}.png", png(images[i]))
    serial = run(drop, landing, None, workers=0)
    parallel = run(drop, landing, None, workers=2)
    assert serial.accepted == parallel.accepted  # same rows, same (source) order


def test_parquet_drop_in_hugging_face_layout(landing, tmp_path, digits):
    images, labels, _ = digits
    drop = landing / "2024-03-01"
    drop.mkdir()
    rows = [{"bytes": png(images[i]), "path": f"{i}.png"} for i in range(5)] + [{"bytes": None, "path": None}]
    table = pa.table({"image": rows, "label": [int(v) for v in labels[:5]] + [1]})
    pq.write_table(table, drop / "train-00000.parquet")
    (drop / "labels.txt").write_text("\n".join(f"digit_{i}" for i in range(10)))
    result = run(drop, landing, None)
    assert [r["label"] for r in result.accepted] == [f"digit_{v}" for v in labels[:5]]
    assert result.accepted[2]["source_path"] == "2024-03-01/train-00000.parquet#row=2"
    assert result.rejected[0]["source_path"].endswith("#row=5")


def test_missing_drop_yields_nothing(landing):
    assert list(iter_drop(landing / "2030-01-01", landing)) == []


def test_store_writes_once_atomically_and_survives_a_removed_folder(tmp_path):
    import shutil

    import pytest

    from synthdata.io.store import InvalidKeyError

    store = BlobStore(tmp_path / "store")
    key = BlobStore.key_for("ab" + "0" * 62, "png")
    store.put(key, b"first")
    store.put(key, b"second")  # content-addressed: an existing object is never rewritten
    assert store.read(key) == b"first"
    shutil.rmtree(tmp_path / "store")  # the folder it remembers making is gone
    store.put(key, b"again")
    assert store.read(key) == b"again"
    assert [p.name for p in (tmp_path / "store" / "images" / "ab").iterdir()] == [key.split("/")[-1]]  # no temp left
    with pytest.raises(InvalidKeyError):
        store.put("images/../../etc/passwd", b"x")


def test_concurrent_atomic_writes_of_one_file_never_mix(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from synthdata.io.atomic import write_atomic

    target = tmp_path / "shared" / "object.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def writer(i: int) -> None:
        for _ in range(20):
            write_atomic(target, payloads[i])
            assert target.read_bytes() in payloads  # a whole payload, never a truncated or mixed one

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    assert [p.name for p in target.parent.iterdir()] == ["object.bin"]  # no temp file left behind


LEGACY_RAW_DDL = """
    image_id VARCHAR NOT NULL, file_sha256 VARCHAR NOT NULL, partition_date DATE NOT NULL,
    source_path VARCHAR NOT NULL, label VARCHAR, width INTEGER NOT NULL, height INTEGER NOT NULL,
    mode VARCHAR NOT NULL, original_mode VARCHAR, format VARCHAR, n_bytes BIGINT, blob_key VARCHAR NOT NULL,
    phash UBIGINT, run_id VARCHAR, ingested_at TIMESTAMP DEFAULT current_timestamp"""
LEGACY_REJECTED_DDL = """
    partition_date DATE NOT NULL, source_path VARCHAR NOT NULL, label VARCHAR, reason VARCHAR NOT NULL,
    run_id VARCHAR, rejected_at TIMESTAMP DEFAULT current_timestamp"""


def test_a_warehouse_from_before_versioned_ingests_is_adopted_without_losing_rows(landing, tmp_path, digits):
    import duckdb

    from synthdata.curation.ingest import ingest_partition
    from synthdata.io.warehouse import connect

    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))  # the layout the first release wrote: raw_images / rejected_images tables
    old.execute(f"CREATE TABLE raw_images ({LEGACY_RAW_DDL})")
    old.execute(f"CREATE TABLE rejected_images ({LEGACY_REJECTED_DDL})")
    for day, n in (("2024-01-01", 3), ("2024-01-02", 2)):
        for i in range(n):
            old.execute(
                "INSERT INTO raw_images (image_id, file_sha256, partition_date, source_path, label, width, height, mode, blob_key, phash) "
                "VALUES (?, 'f', ?, ?, 'a', 8, 8, 'L', 'images/ab/abcdefabcdefabcd.png', 42)",
                [f"{day}-{i}", day, f"{day}/a/{i}.png"],
            )
    old.execute("INSERT INTO rejected_images (partition_date, source_path, reason) VALUES ('2024-01-02', 'x.txt', 'not an image')")
    old.close()

    con = connect(path)
    assert con.execute("SELECT count(*), count(DISTINCT partition_date) FROM raw_images").fetchone() == (5, 2)
    assert con.execute("SELECT reason FROM rejected_images").fetchall() == [("not an image",)]
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('raw_images', 'rejected_images')").fetchone()[0] == 0
    con.close()
    con = connect(path)  # opening again changes nothing
    assert con.execute("SELECT count(*) FROM raw_images").fetchone()[0] == 5

    images, _, _ = digits
    drop = landing / "2024-01-02"
    for i in range(4):
        (drop / "b").mkdir(parents=True, exist_ok=True)
        (drop / "b" / f"{i}.png").write_bytes(png(images[i]))
    ingest_partition(con, "2024-01-02", drop, landing, None, workers=0)  # a re-ingest replaces the adopted rows
    counts = dict(con.execute("SELECT partition_date::VARCHAR, count(*) FROM raw_images GROUP BY 1").fetchall())
    assert counts == {"2024-01-01": 3, "2024-01-02": 4}
    assert con.execute("SELECT count(*) FROM rejected_images").fetchone()[0] == 0


def clip_art(width: int, height: int) -> bytes:
    """A real drawing (skimage's logo) upscaled to a large palette PNG, the way large clip art is stored."""
    import io

    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.logo()).resize((width, height), Image.Resampling.NEAREST).quantize(64).save(buf, "PNG")
    return buf.getvalue()


def test_large_images_are_ingested_reduced_with_their_originals_kept_as_they_are(landing, tmp_path, digits):
    from synthdata.curation.ingest import ingest_partition
    from synthdata.io.imageio import DecodeLimits
    from synthdata.io.warehouse import connect

    images, _, _ = digits
    drop = landing / "2024-07-01"
    big = clip_art(1600, 1000)
    write(drop / "art" / "poster.png", big)
    write(drop / "art" / "poster_copy.png", big)
    write(drop / "art" / "small.png", png(images[0]))
    # decode_pixels scaled down, so a 1.6 MP drawing plays a several-hundred-megapixel one.
    store = BlobStore(tmp_path / "store", DecodeLimits(decode_pixels=200_000))
    con = connect(tmp_path / "w.duckdb")
    stats = ingest_partition(con, "2024-07-01", drop, landing, store, workers=0)
    assert (stats.accepted, stats.rejected, stats.reduced) == (3, 0, 2)
    rows = con.execute("SELECT source_path, image_id, width, height, blob_key FROM raw_images ORDER BY 1").fetchall()
    (_, id1, w, h, key), (_, id2, *_), _ = rows
    assert id1 == id2 and (w, h) == (1600, 1000)  # sizes are the original's; copies share one id
    assert store.read(key) == big  # the original, byte for byte


@pytest.mark.slow
def test_a_168_megapixel_drawing_is_accepted_at_the_default_limits(landing):
    """The size of the issue's largest-sided clip art (10524x16000, a few MB), at the shipped defaults."""
    from synthdata.curation.ingest import ingest_items

    drop = landing / "2024-07-02"
    write(drop / "art" / "huge.png", clip_art(10524, 16000))
    out = IngestBatch()
    for batch in ingest_items(iter_drop(drop, landing), None, workers=0):
        out.extend(batch)
    assert not out.rejected and out.reduced == 1
    assert (out.accepted[0]["width"], out.accepted[0]["height"]) == (10524, 16000)
