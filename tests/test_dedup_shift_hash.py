"""Shift hashes: 1-2 px crops and shifts of small real images become candidates, with few look-alikes."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from synthdata.dedup.calibrate import plant_copy
from synthdata.dedup import candidates
from synthdata.dedup.candidates import candidate_pairs
from synthdata.dedup.phash import hamming, image_hashes, lowfreq_array, lowfreq_bytes, phash_and_crop_hashes, to_signed
from synthdata.dedup.shift_hash import CENTRE, N_SHIFTS, SHIFTS, WINDOW, shift_hashes_arrays, stored


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """200 real 25x25 grey faces and non-faces (skimage's LFW subset)."""
    return np.rint(skimage.data.lfw_subset() * 255).astype(np.uint8)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Content moved by (dy, dx) px, the uncovered border repeating the edge (as calibrate's shift)."""
    h, w = image.shape
    rows, cols = np.clip(np.arange(h) - dy, 0, h - 1), np.clip(np.arange(w) - dx, 0, w - 1)
    return np.ascontiguousarray(image[rows][:, cols])


def test_a_shifted_or_cropped_copy_reproduces_one_of_the_originals_windows_exactly(faces) -> None:
    originals = shift_hashes_arrays(faces)
    assert originals.shape == (len(faces), N_SHIFTS) and (originals[:, CENTRE] != 0).mean() > 0.95
    faces, originals = faces[(originals != 0).all(axis=1)], originals[(originals != 0).all(axis=1)]
    for dy, dx in SHIFTS:
        copies = shift_hashes_arrays(np.stack([shifted(f, dy, dx) for f in faces]))
        # The copy's centred window is the original's window moved with the content, pixel for pixel.
        assert (copies[:, CENTRE] == originals[:, SHIFTS.index((-dy, -dx))]).all()
    for top, bottom, left, right in [(2, 0, 0, 0), (0, 2, 1, 1), (1, 0, 2, 1), (2, 2, 2, 2)]:
        crops = np.stack([f[top : 25 - bottom, left : 25 - right] for f in faces])
        centre = shift_hashes_arrays(crops)[:, CENTRE]
        assert all(c in set(o.tolist()) for c, o in zip(centre.tolist(), originals))
    # Three pixels is beyond the supported shifts: no window of the original matches any more.
    beyond = shift_hashes_arrays(np.stack([shifted(f, 3, 0) for f in faces]))[:, CENTRE]
    assert np.mean([c in set(o.tolist()) for c, o in zip(beyond.tolist(), originals)]) < 0.05


def _window_distance(hashes: np.ndarray) -> np.ndarray:
    """The shift channel by hand: (probing, keyed) least Hamming distance of a probing image's windows at every
    shift to a keyed image's centred one; 64 where either has no hash (0) and on the diagonal."""
    distance = hamming(hashes[:, :, None], hashes[None, None, :, CENTRE])  # (probing, shift, keyed)
    distance[(hashes == 0)[:, :, None] | (hashes[:, CENTRE] == 0)[None, None, :]] = 64  # 0 = no hash
    near = distance.min(axis=1)
    np.fill_diagonal(near, 64)
    return near


def test_distinct_faces_rarely_share_a_window_and_pHash_alone_misses_most_shifts(faces) -> None:
    near = _window_distance(shift_hashes_arrays(faces))
    assert (near <= 4).any(axis=1).mean() <= 0.01  # at most 2 of the 200 come within the channel's radius
    rng = np.random.default_rng(0)
    copies = [plant_copy(f, "shift", rng) for f in faces]
    phash = phash_and_crop_hashes([Image.fromarray(f) for f in faces])[0]
    phash_copies = phash_and_crop_hashes([Image.fromarray(c) for c in copies])[0]
    assert np.mean(hamming(phash, phash_copies) <= 10) < 0.6  # why the channel exists


def test_flat_windows_off_image_windows_and_small_images_have_no_hash() -> None:
    flat = np.full((2, 32, 32), 200, np.uint8)
    flat[1] += np.random.default_rng(0).integers(0, 2, (32, 32), dtype=np.uint8)  # +-1 grey level of noise
    assert (shift_hashes_arrays(flat) == 0).all()
    face = np.rint(skimage.data.lfw_subset()[0] * 255).astype(np.uint8)
    small = shift_hashes_arrays(face[None, :18, :18])[0]  # 18 px: only offsets that keep the window inside
    inside = [max(abs(dy), abs(dx)) <= 1 for dy, dx in SHIFTS]
    assert (small[inside] != 0).all() and (small[~np.array(inside)] == 0).all()
    assert (shift_hashes_arrays(face[None, : WINDOW - 1, :]) == 0).all()
    assert stored(shift_hashes_arrays(flat)) == [[], []]


def test_image_hashes_adds_shift_hashes_without_changing_the_phashes(faces) -> None:
    rgb = skimage.data.astronaut()
    pils = [Image.fromarray(f) for f in faces[:50]] + [Image.fromarray(rgb[y : y + 40, :40]) for y in range(0, 200, 20)]
    phash, phash2, shifts = image_hashes(pils)[:3]
    expected_phash, expected_phash2 = phash_and_crop_hashes(pils)
    assert (phash == expected_phash).all() and (phash2 == expected_phash2).all()
    assert (shifts[:50] == shift_hashes_arrays(faces[:50])).all()
    # RGB images are hashed on Pillow's own L conversion, as pHash is.
    assert (shifts[50:] == shift_hashes_arrays(np.stack([np.asarray(p.convert("L")) for p in pils[50:]]))).all()


def _table(images: list[np.ndarray], is_new: np.ndarray, with_shift: np.ndarray) -> duckdb.DuckDBPyConnection:
    phash, phash2, shifts = image_hashes([Image.fromarray(i) for i in images])[:3]
    lists = [[int(v) for v in to_signed(np.array(row, np.uint64))] if keep else None
             for row, keep in zip(stored(shifts), with_shift)]  # fmt: skip
    frame = pd.DataFrame({"image_id": [f"i{k:04d}" for k in range(len(images))], "phash": to_signed(phash),
                          "phash2": to_signed(phash2), "shift_hashes": lists, "is_new": is_new})  # fmt: skip
    con = duckdb.connect()
    con.execute("CREATE TABLE hashes (image_id VARCHAR, phash BIGINT, phash2 BIGINT, shift_hashes BIGINT[], is_new BOOLEAN)")
    con.execute("INSERT INTO hashes SELECT * FROM frame")
    return con


def test_the_shift_channel_pairs_every_planted_crop_and_shift_and_old_rows_fall_back_to_the_crop_channel(faces) -> None:
    rng = np.random.default_rng(1)
    kinds = ["shift", "crop"] * 40
    textured = np.flatnonzero([f.std() >= 4 for f in faces])  # a blank frame's copies are another matter
    sources = rng.choice(textured, len(kinds), replace=False)
    images = list(faces) + [plant_copy(faces[s], k, rng) for s, k in zip(sources, kinds)]
    truth = {(f"i{s:04d}", f"i{len(faces) + c:04d}") for c, s in enumerate(sources)}
    is_new = np.arange(len(images)) >= len(faces)  # the copies arrive in a later drop

    con = _table(images, is_new, np.ones(len(images), bool))
    with_channel = set(zip(*candidate_pairs(con, "hashes", 10, shift_radius=4)[["a", "b"]].to_numpy().T))
    assert truth <= with_channel
    without = candidate_pairs(con, "hashes", 10, crop_radius=None, shift_radius=None)
    assert len(truth & set(zip(without["a"], without["b"]))) < 0.7 * len(truth)  # pHash alone misses many
    assert len(with_channel) - len(truth) <= len(without)  # and the channel adds next to no look-alikes

    # A warehouse written before the column: the earlier drop's rows have NULL; the crop channel covers them.
    old = _table(images, is_new, is_new)
    fallback = candidate_pairs(old, "hashes", 10, shift_radius=4)
    plain = candidate_pairs(old, "hashes", 10, shift_radius=None)  # the crop channel for every row
    old_ids = {f"i{k:04d}" for k in np.flatnonzero(~is_new)}
    with_old = lambda pairs: {(a, b) for a, b in zip(pairs["a"], pairs["b"]) if a in old_ids or b in old_ids}  # noqa: E731
    assert with_old(fallback) == with_old(plain) and len(with_old(plain) & truth) > 0.6 * len(truth)


def test_max_partners_keeps_each_new_images_nearest_phash_partners(faces) -> None:
    is_new = np.arange(len(faces)) % 2 == 0
    con = _table(list(faces), is_new, np.zeros(len(faces), bool))
    every = candidate_pairs(con, "hashes", 24, crop_radius=None, shift_radius=None)
    capped = candidate_pairs(con, "hashes", 24, crop_radius=None, shift_radius=None, max_partners=3)
    new = {f"i{k:04d}" for k in np.flatnonzero(is_new)}
    nearest: dict[str, list] = {}
    for a, b, d in zip(every["a"], every["b"], every["distance"]):
        for owner, partner in ((a, b), (b, a)):
            if owner in new:
                nearest.setdefault(owner, []).append((d, partner))
    expected = {tuple(sorted((o, p))) for o, found in nearest.items() for _, p in sorted(found)[:3]}
    assert set(zip(capped["a"], capped["b"])) == expected
    assert capped.attrs["capped"] == {"phash": sum(len(found) > 3 for found in nearest.values())} and every.attrs["capped"] == {}
    assert len(capped) < len(every)


def test_max_partners_keeps_the_nearest_by_hamming_distance_and_by_low_frequencies(faces, monkeypatch) -> None:
    """Every image ingested now stores its pHash's low frequencies (64 unit values): of its shortlist (its 32
    nearest by Hamming distance, whatever the cap) a new image keeps half the cap by Hamming distance and half
    by how well the low frequencies correlate (its original first, where 64 bits may tie it with look-alikes);
    a partner without them (a row ingested before) is kept by Hamming distance alone, up to the whole cap, as
    before."""
    rng = np.random.default_rng(3)
    sources = rng.choice(len(faces), 60, replace=False)
    kinds = ["jpeg", "brightness_contrast", "resize"] * 20
    images = list(faces) + [plant_copy(faces[s], k, rng) for s, k in zip(sources, kinds)]
    is_new = np.arange(len(images)) >= len(faces)
    hashes = image_hashes([Image.fromarray(i) for i in images])
    stored_rows = np.arange(len(images)) % 5 != 0  # every fifth image as if ingested before the column
    stored_rows[len(faces):] = True  # (the copies arrive now)
    blobs = [lowfreq_bytes(r) if keep else None for r, keep in zip(hashes.lowfreq, stored_rows)]

    def search(lowfreq: list | None, cap: int | None) -> pd.DataFrame:
        con = _table(images, is_new, np.zeros(len(images), bool))
        if lowfreq is not None:
            con.execute("ALTER TABLE hashes ADD COLUMN lowfreq BLOB")
            con.executemany("UPDATE hashes SET lowfreq = ? WHERE image_id = ?",
                            [(b, f"i{k:04d}") for k, b in enumerate(lowfreq)])  # fmt: skip
        return candidate_pairs(con, "hashes", 24, crop_radius=None, shift_radius=None, max_partners=cap)

    every = search(blobs, None)
    capped = search(blobs, 4)
    rows = lowfreq_array([b if b is not None else bytes(128) for b in blobs])
    known = np.array([b is not None for b in blobs])
    distance = {}
    for a, b, d in zip(every["a"], every["b"], every["distance"]):
        distance[int(a[1:]), int(b[1:])] = distance[int(b[1:]), int(a[1:])] = d
    expected, dropped, long_lists = set(), 0, 0
    for owner in np.flatnonzero(is_new):
        partners = [p for (o, p) in distance if o == owner]
        by_distance = sorted(partners, key=lambda p: (distance[owner, p], p))
        shortlist = by_distance[:32]  # candidates.LOWFREQ_SHORTLIST, whatever the cap
        long_lists += len(partners) > 32
        by_lowfreq = sorted((p for p in shortlist if known[p]), key=lambda p: (-float(rows[owner] @ rows[p]), p))
        keep = set(by_distance[:2]) | set(by_lowfreq[:2]) | {p for p in by_distance[:4] if not known[p]}
        expected |= {tuple(sorted((f"i{owner:04d}", f"i{p:04d}"))) for p in keep}
        dropped += len(keep) < len(partners)
    assert set(zip(capped["a"], capped["b"])) == expected and len(capped) < len(every)
    assert capped.attrs["capped"] == {"phash": dropped} and dropped > 0
    assert long_lists > 0  # the shortlist leaves partners out
    # The low frequencies are loaded a chunk of images at a time: the chunks do not change the pairs.
    monkeypatch.setattr(candidates, "_LOWFREQ_CHUNK", 7)
    assert search(blobs, 4).equals(capped)
    monkeypatch.undo()

    # The one partner each re-encoded, brightness-changed or resized copy keeps by low frequencies is its original.
    truth = {(f"i{s:04d}", f"i{len(faces) + c:04d}") for c, s in enumerate(sources)}
    one = search([lowfreq_bytes(r) for r in hashes.lowfreq], 2)
    assert truth <= set(zip(one["a"], one["b"]))


def test_shift_max_partners_keeps_each_new_images_nearest_shift_partners(faces) -> None:
    """The shift channel's look-alikes grow with the set as pHash's do: capped, each new image keeps its nearest
    shift partners (least key distance over its shifts, then pHash distance, then id), pHash's pairs unchanged."""
    rng = np.random.default_rng(2)
    textured = np.flatnonzero([f.std() >= 4 for f in faces])
    # Six shifted copies of each of 20 faces: a copy meets its original and the siblings shifted near it.
    sources = rng.choice(textured, 20, replace=False)
    images = list(faces) + [plant_copy(faces[s], "shift", rng) for s in sources for _ in range(6)]
    is_new = np.arange(len(images)) >= len(faces)
    con = _table(images, is_new, np.ones(len(images), bool))
    phash, _, shifts = image_hashes([Image.fromarray(i) for i in images])[:3]
    ids = [f"i{k:04d}" for k in range(len(images))]

    key = _window_distance(shifts)
    by_phash = hamming(phash[:, None], phash[None, :])
    expected_shift, partners = set(), []
    for owner in np.flatnonzero(is_new):
        near = [(key[owner, p], by_phash[owner, p], ids[p]) for p in np.flatnonzero(key[owner] <= 4)]
        expected_shift |= {tuple(sorted((ids[owner], p))) for *_, p in sorted(near)[:2]}
        partners.append(len(near))
    assert np.mean(np.array(partners) > 2) > 0.5  # the cap binds for most copies

    phash_only = candidate_pairs(con, "hashes", 10, crop_radius=None, shift_radius=None)
    capped = candidate_pairs(con, "hashes", 10, crop_radius=None, shift_radius=4, shift_max_partners=2)
    every = candidate_pairs(con, "hashes", 10, crop_radius=None, shift_radius=4)
    pairs = lambda frame: set(zip(frame["a"], frame["b"]))  # noqa: E731
    assert pairs(capped) == pairs(phash_only) | expected_shift
    assert capped.attrs["capped"] == {"shift_hashes": int(np.sum(np.array(partners) > 2))}  # what the cap left out
    assert len(pairs(every) - pairs(capped)) > 0


def test_shift_partners_places_each_outside_probes_partners_as_the_search_ranks_them(faces) -> None:
    """candidates.shift_partners (the shift channel for planted copies that are not in the table, which
    synthdata.dedup.partner_cap ranks to choose the shift cap): each probe's partners in the table with their
    place, by least key distance over the probe's shifts, then pHash distance, then id, so that a cap of k keeps
    places 1..k; probes never pair with each other."""
    rng = np.random.default_rng(4)
    textured = np.flatnonzero([f.std() >= 4 for f in faces])
    sources = rng.choice(textured, 20, replace=False)
    # The table: the faces and six shifted copies of each of 20; the probes: one more shifted copy of each.
    images = list(faces) + [plant_copy(faces[s], "shift", rng) for s in sources for _ in range(6)]
    probes = [plant_copy(faces[s], "shift", rng) for s in sources]
    con = _table(images, np.zeros(len(images), bool), np.ones(len(images), bool))
    phash, _, shifts = image_hashes([Image.fromarray(i) for i in images + probes])[:3]
    ids = [f"i{k:04d}" for k in range(len(images))]
    probe_ids = [f"~p{k:02d}" for k in range(len(probes))]
    frame = pd.DataFrame({"image_id": probe_ids, "phash": to_signed(phash[len(images):]),
                          "shift_hashes": [[int(v) for v in to_signed(np.array(r, np.uint64))]
                                           for r in stored(shifts[len(images):])]})  # fmt: skip
    con.register("probe_rows", frame)
    cap = 8
    kept = candidates.shift_partners(con, "hashes", "SELECT * FROM probe_rows", max_partners=cap)

    key = _window_distance(shifts)[len(images):, : len(images)]  # probes x table rows
    by_phash = hamming(phash[len(images):, None], phash[None, : len(images)])
    for p, owner in enumerate(probe_ids):
        near = sorted((key[p, r], by_phash[p, r], ids[r]) for r in np.flatnonzero(key[p] <= 4))
        mine = kept[kept["owner"] == owner]
        assert mine["partner"].tolist() == [i for *_, i in near[:cap]]
        assert mine["place"].tolist() == list(range(1, min(cap, len(near)) + 1))
    assert (kept.groupby("owner").size() >= 4).mean() >= 0.5  # most probes have partners beyond the first few
    assert not kept["partner"].str.startswith("~").any()
