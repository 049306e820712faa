"""Every kind of bad file goes to rejected_images with a reason; nothing else in the drop is lost."""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from synthdata.curation.ingest import IngestBatch, ingest_drop, ingest_items, ingest_partition
from synthdata.io.imageio import DecodeLimits
from synthdata.io.sources import iter_drop
from synthdata.io.warehouse import connect
from tests.conftest import png


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def flat_1bit_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def collect(batches) -> IngestBatch:
    out = IngestBatch()
    for b in batches:
        out.accepted.extend(b.accepted)
        out.rejected.extend(b.rejected)
    return out


def test_every_bad_file_is_rejected_with_its_reason_and_good_ones_survive(landing, tmp_path, digits):
    images, labels, _ = digits
    drop = landing / "2024-05-01"
    for i in range(10):
        write(drop / "ok" / f"{i}.png", png(images[i]))
    good = png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    bad = {
        "truncated.png": (good[: len(good) // 2], "truncated or corrupt PNG"),
        "truncated.jpg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated or corrupt JPEG"),
        "zero.png": (b"", "empty file (0 bytes)"),
        "text.jpg": (b"<html>not an image</html>" * 20, "not an image"),
        "bomb.png": (flat_1bit_png(2500, 2500), "decompression bomb"),
        "huge.png": (png(np.zeros((3000, 3000), dtype=np.uint8)), "too many pixels"),
        "strip.png": (png(np.zeros((2, 400), dtype=np.uint8)), "absurd aspect ratio"),
    }
    for name, (data, _) in bad.items():
        write(drop / "bad" / name, data)
    # Small limits, so small files play the large ones: 6 MP claimed by a 1 KB file is a bomb above 1 MP.
    limits = DecodeLimits(max_pixels=8_000_000, decode_pixels=1_000_000)
    outside = tmp_path / "outside.png"
    write(outside, good)
    os.symlink(outside, drop / "bad" / "link.png")

    result = collect(ingest_items(iter_drop(drop, landing), None, limits, workers=0))
    reasons = {Path(r["source_path"]).name: r["reason"] for r in result.rejected}
    for name, (_, reason) in bad.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert reasons["link.png"].startswith("symlink escapes the landing root")
    assert len(result.accepted) == 10 and len(result.rejected) == len(bad) + 1


def test_a_file_that_vanishes_during_the_scan_is_rejected_not_fatal(landing, digits):
    images, _, _ = digits
    drop = landing / "2024-05-02"
    for i in range(6):
        write(drop / "a" / f"{i}.png", png(images[i]))

    def vanishing(items):
        for item in items:
            if item.source_path.endswith("3.png"):
                Path(item.path).unlink()  # upstream deletes it after we listed it
            yield item

    result = collect(ingest_items(vanishing(iter_drop(drop, landing)), None, workers=0))
    assert [r["reason"] for r in result.rejected] == ["file vanished during scan"]
    assert len(result.accepted) == 5


def test_a_broken_symlink_inside_the_landing_root_is_rejected_with_its_target(landing, digits):
    images, _, _ = digits
    drop = landing / "2024-05-03"
    write(drop / "a" / "ok.png", png(images[0]))
    os.symlink(drop / "a" / "gone.png", drop / "a" / "dangling.png")
    result = collect(ingest_items(iter_drop(drop, landing), None, workers=0))
    assert [r["source_path"] for r in result.rejected] == ["2024-05-03/a/dangling.png"]
    assert result.rejected[0]["reason"].startswith("broken symlink") and "gone.png" in result.rejected[0]["reason"]
    assert [r["source_path"] for r in result.accepted] == ["2024-05-03/a/ok.png"]


def test_missing_drop_gives_an_empty_partition(tmp_path, landing):
    con = connect(tmp_path / "w.duckdb")
    stats = ingest_partition(con, "2024-06-01", landing / "2024-06-01", landing, None)
    assert (stats.accepted, stats.rejected) == (0, 0)
    assert con.execute("SELECT count(*) FROM raw_images").fetchone() == (0,)


def test_a_failed_ingest_leaves_the_previous_partition_untouched(tmp_path, landing, digits):
    import pytest

    from synthdata.io.store import BlobStore

    images, _, _ = digits
    drop = landing / "2024-06-02"
    for i in range(5):
        write(drop / "x" / f"{i}.png", png(images[i]))
    con = connect(tmp_path / "w.duckdb")
    ingest_partition(con, "2024-06-02", drop, landing, None, workers=0)
    write(drop / "x" / "5.png", png(images[5]))
    broken_store = tmp_path / "not_a_folder"
    broken_store.write_text("a file where the store should be")  # every write into the store fails
    with pytest.raises(OSError):
        ingest_partition(con, "2024-06-02", drop, landing, BlobStore(broken_store), workers=0)
    assert con.execute("SELECT count(*) FROM raw_images WHERE partition_date = '2024-06-02'").fetchone() == (5,)


def test_stored_originals_are_untouched_and_stored_once(tmp_path, landing, digits):
    from synthdata.io.store import BlobStore

    images, _, _ = digits
    drop = landing / "2024-06-03"
    write(drop / "a" / "x.png", png(images[0]))
    write(drop / "b" / "same_pixels.png", png(images[0], compress_level=0))
    store = BlobStore(tmp_path / "store")
    out = IngestBatch()
    ingest_drop(drop, landing, store, workers=0, on_batch=lambda b: out.accepted.extend(b.accepted))
    assert out.accepted[0]["image_id"] == out.accepted[1]["image_id"]
    assert out.accepted[0]["blob_key"] == out.accepted[1]["blob_key"]
    assert len(list((tmp_path / "store").rglob("*.png"))) == 1
    assert store.read(out.accepted[0]["blob_key"]) == png(images[0])


def test_an_image_that_cannot_be_hashed_is_rejected_and_its_batch_mates_keep_their_hashes(digits):
    from synthdata.curation.ingest import _add_hashes
    from synthdata.io.imageio import decode_image

    images, _, _ = digits
    decoded = [decode_image(png(images[i])).image for i in range(3)]
    decoded[1].close()  # a real image in a state no hash can read: the batch call fails on it
    rows = [{"source_path": f"{i}.png", "label": "a"} for i in range(3)]
    out = IngestBatch()
    _add_hashes(rows, decoded, out)
    assert [r["source_path"] for r in out.accepted] == ["0.png", "2.png"]
    assert all(isinstance(r["phash"], int) for r in out.accepted)
    assert out.rejected[0]["source_path"] == "1.png" and out.rejected[0]["reason"].startswith("perceptual hash failed")


def test_a_file_name_that_is_not_utf8_is_ingested_under_an_escaped_name(tmp_path, landing, digits):
    images, _, _ = digits
    drop = landing / "2024-06-04"
    write(drop / "a" / "ok.png", png(images[0]))
    with open(os.path.join(os.fsencode(drop / "a"), b"caf\xe9.png"), "wb") as f:  # Latin-1 bytes from an old system
        f.write(png(images[1]))
    con = connect(tmp_path / "w.duckdb")
    stats = ingest_partition(con, "2024-06-04", drop, landing, None, workers=0)
    assert (stats.accepted, stats.rejected) == (2, 0)
    names = sorted(r[0] for r in con.execute("SELECT source_path FROM raw_images").fetchall())
    assert names == ["2024-06-04/a/caf\\xe9.png", "2024-06-04/a/ok.png"]
