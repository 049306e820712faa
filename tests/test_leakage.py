"""The cross-split leakage audit on real images: planted re-encoded, brightened, resized and shifted copies of
held-out faces placed in train are found; distinct faces and photo tiles are not."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from synthdata.curation.leakage import LeakageSettings, audit_leakage, leakage_gallery
from synthdata.curation.split import split_of
from synthdata.dedup.phash import phash_and_crop_hashes

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def jpeg(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=85)
    return np.asarray(Image.open(buf).convert("L"))


def brighter(a: np.ndarray) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(1.12))


def doubled(a: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((2 * a.shape[1], 2 * a.shape[0]), Image.Resampling.BICUBIC))


def shifted(a: np.ndarray) -> np.ndarray:
    return np.pad(a, ((0, 0), (1, 0)), mode="edge")[:, :-1]  # one pixel right, the edge repeated


TRANSFORMS = (jpeg, brighter, doubled, shifted)


@pytest.fixture(scope="module")
def faces():
    from skimage import data

    return list((data.lfw_subset()[:100] * 255).round().astype(np.uint8))  # the 100 faces (25x25)


@pytest.fixture(scope="module")
def tiles():
    from skimage import data

    rng = np.random.default_rng(0)
    photos = [np.asarray(Image.fromarray(p).convert("L")) for p in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket())]
    out = []
    for i in range(80):
        p = photos[i % len(photos)]
        y, x = int(rng.integers(0, p.shape[0] - 64)), int(rng.integers(0, p.shape[1] - 64))
        out.append(p[y : y + 64, x : x + 64].copy())
    return out


def table(pixels: list[np.ndarray], ids: list[str], splits: list[str]) -> pd.DataFrame:
    phash, phash2 = phash_and_crop_hashes([Image.fromarray(p) for p in pixels])
    return pd.DataFrame({"image_id": ids, "split": splits, "phash": phash, "phash2": phash2})


def hashed_splits(ids: list[str]) -> list[str]:
    return [split_of(i, 0, FRACTIONS) for i in ids]


@pytest.mark.parametrize("name", ["faces", "tiles"])
def test_distinct_images_are_not_flagged(name, request):
    pixels = request.getfixturevalue(name)
    ids = [f"{name}{i:03d}" for i in range(len(pixels))]
    report = audit_leakage(table(pixels, ids, hashed_splits(ids)), dict(zip(ids, pixels)).__getitem__)
    assert report.flagged.empty, report.flagged
    assert report.searched["test"] > 10 and report.compared > 0
    assert report.rates() == {"val": 0.0, "test": 0.0}


# A one-pixel shift of a 25 px face is a 4% crop: similarity 0.96, where distinct 8x8 digits of one class
# reach 0.99, so the audit's defaults leave it; on 64 px tiles a shift scores like a re-encode.
@pytest.mark.parametrize("name, transforms", [("faces", (jpeg, brighter, doubled)), ("tiles", TRANSFORMS)])
def test_planted_copies_of_held_out_images_in_train_are_found(name, transforms, request):
    originals = request.getfixturevalue(name)
    ids = [f"{name}{i:03d}" for i in range(len(originals))]
    splits = hashed_splits(ids)
    # Near-flat tiles (std ~3) are left out: a copy of one is no closer than the other flat tiles of that
    # photo, and the ratio test rightly cannot call it a copy.
    held_out = [i for i, s in enumerate(splits) if s != "train" and originals[i].std() > 10][:8]
    pixels, planted = list(originals), {}
    for k, i in enumerate(held_out):
        transform = transforms[k % len(transforms)]
        pixels.append(transform(originals[i]))
        ids.append(f"copy{k}-{transform.__name__}")
        splits.append("train")
        planted[ids[i]] = ids[-1]
    report = audit_leakage(table(pixels, ids, splits), dict(zip(ids, pixels)).__getitem__)
    found = dict(zip(report.flagged["other_id"], report.flagged["kept_id"]))
    assert found == planted
    assert (report.flagged["similarity"] >= 0.9).all() and (report.flagged["ratio"] <= 0.2).all()
    n_val = sum(splits[ids.index(o)] == "val" for o in planted)
    assert report.rates()["val"] == pytest.approx(n_val / report.searched["val"])
    assert report.closest["flagged"].iloc[: len(planted)].all()  # most suspicious first


def test_a_copy_dedup_would_miss_is_still_found_at_the_looser_setting(faces):
    # A contrast change beyond the supported +-15% moves pHash far: still within the audit's radius.
    copy = np.clip((faces[0].astype(np.float64) - 128) * 1.4 + 128, 0, 255).astype(np.uint8)
    ids = [f"face{i:03d}" for i in range(len(faces))] + ["copy"]
    splits = ["test"] + ["train"] * (len(faces) - 1) + ["train"]
    pixels = [*faces, copy]
    report = audit_leakage(table(pixels, ids, splits), dict(zip(ids, pixels)).__getitem__)
    assert report.flagged[["kept_id", "other_id"]].values.tolist() == [["copy", "face000"]]
    strict = audit_leakage(table(pixels, ids, splits), dict(zip(ids, pixels)).__getitem__, LeakageSettings(radius=0))
    assert strict.compared < report.compared


def test_gallery_shows_the_pairs_train_left(faces):
    ids = ["a", "b"]
    report = audit_leakage(table([faces[0], jpeg(faces[0])], ids, ["train", "test"]), dict(zip(ids, [faces[0], jpeg(faces[0])])).__getitem__)
    encoded = {i: io.BytesIO() for i in ids}
    for i, p in zip(ids, [faces[0], jpeg(faces[0])]):
        Image.fromarray(p).save(encoded[i], format="PNG")
    md = leakage_gallery(report.closest, lambda i: encoded[i].getvalue())
    assert md.startswith("Train (left)") and "data:image/png;base64," in md and "**flagged**" in md
    assert leakage_gallery(report.closest.iloc[:0], lambda i: b"") == ""


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_ratio"):
        LeakageSettings(max_ratio=0)
    with pytest.raises(ValueError, match="radius"):
        LeakageSettings(radius=64)


def test_reencoded_symmetric_drawings_in_train_are_found_through_the_fragile_phash_channel():
    """Debian's Adwaita icons: the 233 with a fragile pHash (symmetric glyphs) are held out, a JPEG or WebP file
    of each sits in train among the other icons. pHash scatters 23 of those copies beyond the audit's radius
    (16); with `raw_images`' `lowfreq` and `phash_fragile_bits` the audit finds and flags all 23 (with or without
    `thumb32`), without them (a warehouse ingested before the columns) the crop channel finds 15."""
    from tests.conftest import ADWAITA
    from tests.test_fragile_phash import reencoded, unique_icons
    from synthdata.dedup.phash import FRAGILE_BITS, hamming, image_hashes, lowfreq_bytes, thumb_bytes, to_signed

    if not ADWAITA.is_dir():
        pytest.skip("needs Debian's adwaita-icon-theme (apt-get install adwaita-icon-theme)")
    icons = [x for _, x in unique_icons()]
    hashes = image_hashes([Image.fromarray(x) for x in icons])
    fragile = np.flatnonzero(hashes.fragile_bits >= FRAGILE_BITS)
    copies = [c for _, _, c in reencoded([icons[k] for k in fragile], seed=4)]
    copy_hashes = image_hashes([Image.fromarray(c) for c in copies])
    far = {f"i{fragile[j]:04d}" for j in np.flatnonzero(hamming(copy_hashes.phash, hashes.phash[fragile]) > 16)}
    assert len(far) >= 15
    ids = [f"i{k:04d}" for k in range(len(icons))] + [f"c{k:04d}" for k in fragile]
    held_out = set(fragile.tolist())
    images = pd.DataFrame({
        "image_id": ids,
        "split": ["test" if k in held_out else "train" for k in range(len(icons))] + ["train"] * len(fragile),
        "phash": to_signed(np.concatenate([hashes.phash, copy_hashes.phash])),
        "phash2": to_signed(np.concatenate([hashes.phash2, copy_hashes.phash2])),
        "lowfreq": [lowfreq_bytes(r) for r in np.concatenate([hashes.lowfreq, copy_hashes.lowfreq])],
        "phash_fragile_bits": np.concatenate([hashes.fragile_bits, copy_hashes.fragile_bits]).astype(int),
        "thumb32": [thumb_bytes(t, r, b) for t, r, b in zip(np.concatenate([hashes.thumbs, copy_hashes.thumbs]),
                                                            np.concatenate([hashes.lowfreq, copy_hashes.lowfreq]),
                                                            np.concatenate([hashes.fragile_bits, copy_hashes.fragile_bits]))],
    })  # fmt: skip
    pixels = dict(zip(ids, icons + copies))

    def flagged_far(columns: pd.DataFrame) -> int:
        closest = audit_leakage(columns, pixels.__getitem__).closest
        own = closest[(closest["kept_id"] == closest["other_id"].str.replace("i", "c", n=1)) & closest["flagged"]]
        return len(set(own["other_id"]) & far)

    assert flagged_far(images) == len(far)
    assert flagged_far(images.drop(columns=["thumb32"])) == len(far)
    assert flagged_far(images.drop(columns=["lowfreq", "phash_fragile_bits", "thumb32"])) <= len(far) - 5
