"""Images whose pHash noise decides (Debian's Adwaita icons: symmetric glyphs on white). Their re-encoded
copies land beyond pHash's radius; the fragile-pHash channel pairs them, and curation folds them."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthdata.curation.curate import curate
from synthdata.curation.ingest import ingest_partition
from synthdata.datasets import load_fashion_mnist
from synthdata.dedup.codec import encoding_of
from synthdata.dedup.calibrate import plant_copy
from synthdata.dedup.fragile_phash import MAX_PARTNERS, PARTIAL_PARTNERS, fragile_pairs, stored_fragile_pairs
from synthdata.dedup.phash import (
    FRAGILE_BITS,
    LOWFREQ_BITS,
    fragile_channel,
    hamming,
    image_hashes,
    lowfreq_array,
    lowfreq_bytes,
    thumb_array,
    thumb_bytes,
)
from synthdata.io.store import BlobStore
from synthdata.io.warehouse import connect
from tests.conftest import ADWAITA, adwaita_icons, on_white, text_tiles

pytestmark = pytest.mark.skipif(
    not ADWAITA.is_dir(), reason="needs Debian's adwaita-icon-theme (apt-get install adwaita-icon-theme)"
)
RADIUS = 10  # the candidate search's default
# Open Clip Art's shapes (Debian's openclipart-png; .ci/run installs it): jigsaw pieces in several colours, stars,
# arrows, callouts, most of them symmetric: a crowd of look-alikes of one another.
CLIPART_SHAPES = Path("/usr/share/openclipart/png/shapes")


def unique_icons() -> list[tuple[str, np.ndarray]]:
    """Adwaita's icons, one file per content (the theme files some pixels under several names: curation folds
    those as exact duplicates before any near-duplicate search)."""
    seen: set[bytes] = set()
    return [(label, x) for label, x in adwaita_icons() if not (x.tobytes() in seen or seen.add(x.tobytes()))]


def reencoded(icons: list[np.ndarray], seed: int) -> list[tuple[str, bytes, np.ndarray]]:
    """A JPEG or WebP file (alternating; quality 80-95, seeded) of each icon, as Pillow writes it: (format,
    bytes, the pixels it decodes to)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, x in enumerate(icons):
        fmt, buf = ("JPEG", "WEBP")[k % 2], io.BytesIO()
        Image.fromarray(x).save(buf, format=fmt, quality=int(rng.integers(80, 96)))
        with Image.open(io.BytesIO(buf.getvalue())) as decoded:
            out.append((fmt, buf.getvalue(), np.asarray(decoded.convert("RGB"))))
    return out


def test_fragile_hashes_are_those_that_reencoding_scatters():
    icons = [x for _, x in unique_icons()]
    hashes = image_hashes([Image.fromarray(x) for x in icons])
    fragile = hashes.fragile_bits >= FRAGILE_BITS
    assert not np.isnan(hashes.lowfreq).any()  # every icon's low frequencies (no flat icon here)...
    kept = fragile_channel(hashes.fragile_bits, hashes.lowfreq)
    assert np.array_equal(kept, hashes.fragile_bits >= LOWFREQ_BITS)  # ...and the channel's images
    assert 0.2 < fragile.mean() < 0.5  # a symbolic theme: many glyphs are symmetric
    copies = [c for _, _, c in reencoded(icons, seed=1)]
    moved = hamming(image_hashes([Image.fromarray(c) for c in copies]).phash, hashes.phash)
    # The measure predicts which copies pHash loses: a quarter or more of the fragile icons' copies, none of
    # the others'.
    assert (moved[fragile] > RADIUS).mean() > 0.25
    assert (moved[~fragile] > RADIUS).sum() == 0
    # Low frequencies are unit rows, and survive storage as float16 bytes.
    rows = lowfreq_array([lowfreq_bytes(r) for r in hashes.lowfreq])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=2e-3)
    # The thumbnails are pHash's own working image (Pillow's 32x32 LANCZOS luma), stored for the channel's images.
    reference = [np.asarray(Image.fromarray(x).convert("L").resize((32, 32), Image.Resampling.LANCZOS)) for x in icons]
    np.testing.assert_array_equal(hashes.thumbs, np.stack(reference).reshape(len(icons), -1))
    stored = [thumb_bytes(t, r, b) for t, r, b in zip(hashes.thumbs, hashes.lowfreq, hashes.fragile_bits)]
    assert [b is not None for b in stored] == kept.tolist()
    np.testing.assert_array_equal(thumb_array([b for b in stored if b is not None]), hashes.thumbs[kept])

    # Photos and printed text have few fragile pHashes or none; a flat image has no content to describe.
    x, _, _ = load_fashion_mnist(split="test")
    others = image_hashes([Image.fromarray(a) for a in list(x[:1000]) + text_tiles(100)])
    assert (others.fragile_bits >= FRAGILE_BITS).mean() < 0.05
    flat = image_hashes([Image.fromarray(np.full((32, 32), 200, np.uint8))])
    assert np.isnan(flat.lowfreq).all() and not fragile_channel(flat.fragile_bits, flat.lowfreq).any()
    assert lowfreq_bytes(flat.lowfreq[0]) is None


def test_the_channel_pairs_the_copies_phash_scatters_and_stays_bounded():
    icons = [x for _, x in unique_icons()]
    copies = [c for _, _, c in reencoded(icons, seed=2)]
    hashes = image_hashes([Image.fromarray(x) for x in icons + copies])
    n = len(icons)
    moved = hamming(hashes.phash[n:], hashes.phash[:n])
    fragile = hashes.fragile_bits >= FRAGILE_BITS
    ids = [f"o{k:04d}" for k in range(n)] + [f"c{k:04d}" for k in range(n)]
    keep = np.flatnonzero(fragile_channel(hashes.fragile_bits, hashes.lowfreq))
    for copies_new in (True, False):  # the copies arrive after their originals, or before them
        new = np.arange(2 * n) >= n if copies_new else np.arange(2 * n) < n
        pairs = fragile_pairs([ids[k] for k in keep], hashes.lowfreq[keep].astype(np.float32), fragile[keep],
                              new[keep])  # fmt: skip
        found = set(zip(pairs["a"], pairs["b"]))
        lost = [k for k in range(n) if fragile[k] and moved[k] > RADIUS]
        paired = sum((f"c{k:04d}", f"o{k:04d}") in found for k in lost)
        assert len(lost) >= 50 and paired >= 0.97 * len(lost), (paired, len(lost), copies_new)
        assert (pairs["a"] < pairs["b"]).all() and not pairs.duplicated(["a", "b"]).any()
        bound = MAX_PARTNERS * (new & fragile)[keep].sum() + PARTIAL_PARTNERS * (new & ~fragile)[keep].sum()
        assert len(pairs) <= bound  # bounded: no all-pairs flood
        assert all(fragile[ids.index(a)] or fragile[ids.index(b)] for a, b in found)  # one side fragile
        old = {i for i, is_new in zip(ids, new) if not is_new}
        assert not any(a in old and b in old for a, b in found)  # settled before


def test_a_copy_that_lost_its_originals_symmetry_is_paired_with_its_best_fragile_partner():
    """WebP smooths a 16 px glyph: its copy's pHash may have fewer noise-decided bits than FRAGILE_BITS while it
    still lies beyond the radius. Such a copy (here: every copy flagged so) with stored low frequencies is
    paired with its one best fragile image, and never with another image that is not fragile."""
    icons = [x for _, x in unique_icons()]
    copies = [c for _, _, c in reencoded(icons, seed=2)]
    hashes = image_hashes([Image.fromarray(x) for x in icons + copies])
    n = len(icons)
    moved = hamming(hashes.phash[n:], hashes.phash[:n])
    fragile = (hashes.fragile_bits >= FRAGILE_BITS) & (np.arange(2 * n) < n)  # the copies as if not fragile
    keep = np.flatnonzero(fragile_channel(hashes.fragile_bits, hashes.lowfreq))
    ids = [f"o{k:04d}" for k in range(n)] + [f"c{k:04d}" for k in range(n)]
    new = np.arange(2 * n) >= n
    pairs = fragile_pairs([ids[k] for k in keep], hashes.lowfreq[keep].astype(np.float32), fragile[keep], new[keep])
    found = set(zip(pairs["a"], pairs["b"]))
    lost = [k for k in range(n) if fragile[k] and moved[k] > RADIUS and n + k in set(keep)]
    paired = sum((f"c{k:04d}", f"o{k:04d}") in found for k in lost)
    assert len(lost) >= 50 and paired >= 0.97 * len(lost), (paired, len(lost))
    assert len(pairs) <= PARTIAL_PARTNERS * new[keep].sum()
    assert all(fragile[ids.index(a)] or fragile[ids.index(b)] for a, b in found)  # partners: fragile ones only


def test_the_pairs_do_not_depend_on_how_the_comparison_is_chunked(monkeypatch):
    import synthdata.dedup.fragile_phash as fragile_phash

    icons = [x for _, x in adwaita_icons()]  # byte-identical icons included: ties go to the earlier image
    hashes = image_hashes([Image.fromarray(x) for x in icons])
    keep = np.flatnonzero(fragile_channel(hashes.fragile_bits, hashes.lowfreq))
    ids, rows = [f"i{k:04d}" for k in keep], hashes.lowfreq[keep].astype(np.float32)
    fragile = hashes.fragile_bits[keep] >= FRAGILE_BITS
    thumbs = hashes.thumbs[keep]
    thumbs[::7] = 0  # rows stored before thumb32: ranked by their low frequencies
    rng = np.random.default_rng(5)
    for new in (np.ones(len(keep), bool), rng.random(len(keep)) < 0.3):
        for with_thumbs in (None, thumbs):
            whole = fragile_pairs(ids, rows, fragile, new, thumbs=with_thumbs)
            monkeypatch.setattr(fragile_phash, "_ROWS", 29)
            monkeypatch.setattr(fragile_phash, "_COLS", 17)
            monkeypatch.setattr(fragile_phash, "_RERANK_ROWS", 5)
            chunked = fragile_pairs(ids, rows, fragile, new, thumbs=with_thumbs)
            monkeypatch.undo()
            assert len(whole) > 100
            pd.testing.assert_frame_equal(whole, chunked)


def test_curation_folds_reencoded_symmetric_icons_that_phash_alone_misses(tmp_path):
    """Real files through ingest and curation: 300 Adwaita icons, then a drop of a JPEG or WebP file of each of
    those with a fragile pHash. pHash scatters a third of them beyond its radius; with the channel those fold
    onto their own originals and no icon is lost, without it (rows ingested before `lowfreq` existed) most of
    the scattered ones stay apart."""
    icons = unique_icons()[:300]
    pixels = [x for _, x in icons]
    hashes = image_hashes([Image.fromarray(x) for x in pixels])
    fragile = np.flatnonzero(hashes.fragile_bits >= FRAGILE_BITS)
    files = reencoded([pixels[k] for k in fragile], seed=3)
    moved = hamming(image_hashes([Image.fromarray(c) for _, _, c in files]).phash, hashes.phash[fragile])
    scattered = {f"copy_{fragile[j]:04d}" for j in np.flatnonzero(moved > RADIUS)}
    assert len(scattered) >= 15

    landing = tmp_path / "landing"
    for k, (label, x) in enumerate(icons):
        path = landing / "2024-01-01" / label / f"{k:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(path)
    for j, (fmt, data, _) in enumerate(files):
        path = landing / "2024-01-02" / icons[fragile[j]][0] / f"copy_{fragile[j]:04d}.{fmt.lower()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def folded(stored_lowfreq: bool) -> tuple[set[str], int, int]:
        home = tmp_path / ("with" if stored_lowfreq else "without")
        store, con = BlobStore(home / "store"), connect(home / "w.duckdb")
        load = lambda key: np.asarray(store.decode(key).image)  # noqa: E731
        encoding = lambda key: encoding_of(store.read(key))  # noqa: E731
        ingest_partition(con, "2024-01-01", landing / "2024-01-01", landing, store, workers=0)
        first = curate(con, load, load_encoding=encoding)
        ingest_partition(con, "2024-01-02", landing / "2024-01-02", landing, store, workers=0)
        stored = con.execute(
            f"""SELECT count(*), count(lowfreq), count(thumb32) FILTER (phash_fragile_bits >= {LOWFREQ_BITS}),
                       count(*) FILTER (phash_fragile_bits >= {LOWFREQ_BITS}), count(thumb32),
                       min(octet_length(thumb32)), max(octet_length(thumb32))
                FROM raw_images"""
        ).fetchone()
        # Every icon's low frequencies; the channel's icons' thumbnails (and no other's).
        assert stored[0] == stored[1] and stored[2] == stored[3] == stored[4] > 0 and stored[5] == stored[6] == 1024
        if not stored_lowfreq:
            con.execute("UPDATE raw_image_rows SET lowfreq = NULL, phash_fragile_bits = NULL")
        second = curate(con, load, load_encoding=encoding)
        near = con.execute(
            """SELECT g.member_source, i.source_path FROM duplicate_groups g
               JOIN images i ON i.image_id = g.representative_id WHERE g.kind = 'near'"""
        ).fetchall()
        pairs = {m.rsplit("/", 1)[1].split(".")[0]: r.rsplit("/", 1)[1].split(".")[0] for m, r in near}
        assert all(pairs[m] == m.removeprefix("copy_") for m in pairs if m.startswith("copy_")), pairs
        assert first.images == 300  # no icon lost to another
        return set(pairs), second.fragile_phash_candidates, second.images

    with_channel, added, kept = folded(True)
    without, none_added, kept_without = folded(False)
    assert added > 0 and none_added == 0
    # (measured: 40 of the 41 scattered copies and 127 of all 128 files fold; without the channel 9 and 96)
    assert len(scattered & with_channel) >= len(scattered) - 2 and len(with_channel) >= 0.97 * len(files)
    assert len(scattered & without) <= 0.4 * len(scattered)
    assert kept == 300 + len(files) - len(with_channel) and kept_without == 300 + len(files) - len(without)



def clipart_shapes() -> list[np.ndarray]:
    """Open Clip Art's shapes at 48 px on white, one file per content, flat ones left out."""
    out, seen = [], set()
    for path in sorted(CLIPART_SHAPES.rglob("*.png")):
        with Image.open(path) as im:
            im.thumbnail((48, 48), Image.Resampling.LANCZOS)
            pixels = np.asarray(on_white(im))
        if pixels.tobytes() not in seen and pixels.mean(axis=2).std() >= 2:
            seen.add(pixels.tobytes())
            out.append(pixels)
    return out


@pytest.mark.skipif(not CLIPART_SHAPES.is_dir(), reason="needs Debian's openclipart-png")
def test_thumbnails_tell_the_original_from_a_crowd_of_lookalikes():
    """1,600 clip-art shapes, four in five with a fragile pHash: 64 low frequencies rank many look-alikes above a
    brightness-changed or JPEG copy's own original, the 32x32 thumbnails far fewer. Through the warehouse's
    columns (bytes), with and without ``thumb32`` (rows ingested before it), for no more pairs."""
    shapes = clipart_shapes()
    n = len(shapes)
    assert n > 1500
    ids = [f"o{k:04d}" for k in range(n)] + [f"c{k:04d}" for k in range(n)]
    new = [k >= n for k in range(2 * n)]
    # (measured, seed 1: brightness 105 -> 128 of 187 scattered copies paired, JPEG 467 -> 517 of 535, resize
    # 166 -> 166 of 167; pairs 4,793 -> 3,968)
    for kind, gain in (("brightness_contrast", 0.08), ("jpeg", 0.06), ("resize", 0.0)):
        rng = np.random.default_rng(1)
        copies = [plant_copy(x, kind, rng) for x in shapes]
        hashes = image_hashes([Image.fromarray(x) for x in shapes + copies])
        fragile = hashes.fragile_bits >= FRAGILE_BITS
        lost = [k for k in range(n) if fragile[k] and hamming(hashes.phash[n + k], hashes.phash[k]) > RADIUS]
        assert len(lost) > 150
        lowfreq = [lowfreq_bytes(r) for r in hashes.lowfreq]
        thumbs = [thumb_bytes(t, r, b) for t, r, b in zip(hashes.thumbs, hashes.lowfreq, hashes.fragile_bits)]
        paired, sizes = [], []
        for thumb32 in (None, thumbs):
            pairs = stored_fragile_pairs(ids, lowfreq, hashes.fragile_bits.tolist(), new, 0.0, thumb32)
            found = set(zip(pairs["a"], pairs["b"]))
            paired.append(sum((f"c{k:04d}", f"o{k:04d}") in found for k in lost))
            sizes.append(len(pairs))
        assert paired[1] >= paired[0] + gain * len(lost), (kind, paired, len(lost))
        assert sizes[1] <= sizes[0]
