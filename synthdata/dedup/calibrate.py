"""A near-duplicate rule calibrated on the data set itself.

"Copy" must mean more evidence than distinct images of *this* data set reach: distinct T-shirts photographed
the same way correlate at 0.95-0.99, distinct handwritten digits nearly as much, while a photo collection's
distinct images rarely come close. So the operating point of :func:`synthdata.dedup.evidence.copy_distance`
is measured, not assumed:

- **positives**: the supported transforms (:data:`TRANSFORMS`: JPEG/WebP re-encode, brightness/contrast
  +-15%, 0.5x-2x resize, 1-2 px crops and shifts) applied to a seeded sample of the data set's own images;
- **null**: for every compared image, its closest look-alike that is known to be distinct: a pHash candidate
  under a different label (copies arrive under their original's label), or any candidate farther than most
  copies (``NULL_QUANTILE`` of the positives: what is nearer might be a real copy, and a null holding real
  copies would squeeze the threshold onto them). A different-label pair as close as a typical planted copy
  (``CONFLICT_QUANTILE``) is not evidence about distinct images either: it is the same picture filed under
  two labels (on a desktop icon collection, one artwork shipped by two themes; elsewhere, a mislabeled
  copy). Such pairs are counted (``label_conflicts``, with a warning), left out of the null, and folded like
  any copy; the label flags report the conflict. Without labels only the second kind exists, so look-alikes
  inside the copies' range are not seen; the rule says so (``null_source``).

The threshold is the largest distance whose estimated false-duplicate rate (share of images with a known
distinct look-alike within it) stays at or under the target, and never looser than ``POSITIVE_MARGIN``
times the copies' range (a different-label null lies farther than same-label look-alikes, so headroom
beyond the copies is not given away). The rule records threshold, estimated false rate and recall per
transform; :mod:`synthdata.curation.near_duplicates` stores it (`near_duplicate_rules`) so later drops use
the same rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image

from synthdata.dedup.codec import Encoding, lossy_file
from synthdata.dedup.evidence import copy_evidence

# Bump when evidence.py changes what the number means (v2: native-scale shifts; v3: chroma blurred more; v4: L8 mean
# of the residual, not its RMS; v5: lossy files vs their partner encoded like them, synthdata.dedup.codec; v6: 8-bit
# resize views as Pillow makes them; v7: only the best-correlated resize views scored, evidence._SCORED_VIEWS).
STATISTIC = "copy_distance/v7"
DEFAULT_TARGET_FALSE_RATE = 0.001
DEFAULT_CALIBRATION_IMAGES = 256
# The copies' range: this quantile of each transform's planted copies' distances, the largest over transforms;
# the threshold may reach POSITIVE_MARGIN times it (headroom for encoders and resizers the sample did not use), never more.
COPY_QUANTILE = 0.99
POSITIVE_MARGIN = 1.25
# Same-label look-alikes count as known distinct beyond this quantile of the copies' distances: nearer ones
# might be real copies (a null holding real copies would squeeze the threshold onto them).
NULL_QUANTILE = 0.95
# Different-label pairs at or under this quantile of the distances of the copies that leave a residual are
# label conflicts (one picture under two labels), not known-distinct look-alikes. Measured on the icons set
# (v3; docs/benchmarks.md): the closest different-label pairs (copy distance 0-0.002, against a copy median of
# 0.003) were all one artwork shipped by two icon themes; a null holding them pinned the threshold at 0 and the
# rule missed every re-encoded copy.
CONFLICT_QUANTILE = 0.5
# The correlation screen sits SCREEN_MARGIN below this quantile of the planted copies' best correlations
# (see evidence.copy_evidence); copies it screens out count as missed in the recall.
SCREEN_QUANTILE = 0.002
SCREEN_MARGIN = 0.03
SCREEN_CAP = 0.95
# A rule whose calibration drop folds many more images than its known-distinct sample predicts is shown with a
# warning: the drop holds that many near-duplicates, or look-alikes the sample cannot see (same-label ones
# inside the copies' range) are folded. Measured on the icons set without its 28 files that are one picture:
# the rule estimated 0.077% and folded 4.1% of the set's distinct images (clip-art shapes, one theme's glyphs on
# one template); on Fashion-MNIST, MNIST and the mix the drop's fold rate and the estimate are both ~0.
FOLD_WARN_RATIO = 10.0  # ...when the fold rate is this many times the target (or the estimate, if higher)
FOLD_WARN_MIN_IMAGES = 5  # ...and at least this many images fold (one pair is not a pattern)
# A later drop is judged by the stored rule. Planted copies of this many of its new images (seeded) test
# whether the rule still keeps them: a drop of another kind of image (line art after photos, 8 px thumbnails
# after 64 px ones) may need another rule, and that must show rather than silently lower recall.
FIT_IMAGES = 64
# ...and the rule is reported as not fitting when a transform keeps this much less of the drop's copies than
# the rule promised (capped at 99%), and misses at least FIT_MIN_MISSES of them. Beyond sampling noise: at 64
# copies, 0.05 is three more misses; a run of a few new images is not judged on one miss.
FIT_TOLERANCE = 0.05
FIT_MIN_MISSES = 2


def _jpeg_file(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Encoding]:
    """A JPEG copy (q80-95) and how its file was encoded: curation reads that from a real file's header."""
    return lossy_file(image, "JPEG", int(rng.integers(80, 96)))


def _webp_file(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Encoding]:
    """A WebP copy (q80-95) and its file's encoding (the size of its VP8 payload)."""
    return lossy_file(image, "WEBP", int(rng.integers(80, 96)))


def _jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _jpeg_file(image, rng)[0]


def _webp(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _webp_file(image, rng)[0]


def _brightness_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = 1.0 + float(rng.uniform(-0.15, 0.15))
    offset = float(rng.uniform(-0.15, 0.15)) * 127.5
    return np.clip(image.astype(np.float64) * gain + offset, 0, 255).round().astype(np.uint8)


def _resize(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    factor = float(rng.uniform(0.5, 2.0))
    pil = Image.fromarray(image)
    size = (max(1, round(pil.width * factor)), max(1, round(pil.height * factor)))
    method = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)[int(rng.integers(3))]
    return np.asarray(pil.resize(size, method))


def _crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0-2 px off each side, at least one pixel in all."""
    h, w = image.shape[:2]
    cut = rng.integers(0, 3, size=4)
    while not cut.any():
        cut = rng.integers(0, 3, size=4)
    top, bottom, left, right = (int(c) for c in cut)
    return np.ascontiguousarray(image[top : h - bottom, left : w - right])


def _shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Content moved by 1-2 px in x and/or y; the uncovered border repeats the edge pixels."""
    h, w = image.shape[:2]
    dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
    while not (dy or dx):
        dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
    rows, cols = np.clip(np.arange(h) - dy, 0, h - 1), np.clip(np.arange(w) - dx, 0, w - 1)
    return np.ascontiguousarray(image[rows][:, cols])


# The supported transforms: what a near-duplicate is. Lossless re-encodes (PNG, BMP) decode to the same
# pixels and are exact duplicates, found by image_id before any of this.
TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "jpeg": _jpeg,
    "webp": _webp,
    "brightness_contrast": _brightness_contrast,
    "resize": _resize,
    "crop": _crop,
    "shift": _shift,
}


# The transforms that make a lossy file (plant_file), with its encoding.
_LOSSY_FILES: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Encoding]]] = {
    "jpeg": _jpeg_file,
    "webp": _webp_file,
}


# Pixel crops and shifts are supported on images at least this large: 2 px of an 8 px digit is a quarter of
# it, another image rather than a copy.
PIXEL_SHIFT_MIN_SIDE = 20


def applies(image: np.ndarray, kind: str) -> bool:
    """Whether ``kind`` is a supported transform of this image (crops and shifts need PIXEL_SHIFT_MIN_SIDE)."""
    return kind not in ("crop", "shift") or min(image.shape[:2]) >= PIXEL_SHIFT_MIN_SIDE


def plant_copy(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of a uint8 image under one of :data:`TRANSFORMS`."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; known: {sorted(TRANSFORMS)}")
    return TRANSFORMS[kind](image, rng)


def plant_file(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, Encoding | None]:
    """:func:`plant_copy` (the same draws of ``rng``) and how the copy's file was lossily encoded, as
    :func:`synthdata.dedup.codec.encoding_of` reads it from a file (None: pixels changed without a lossy file)."""
    if kind in _LOSSY_FILES:
        return _LOSSY_FILES[kind](image, rng)
    return plant_copy(image, kind, rng), None


@dataclass(frozen=True)
class NearDuplicateRule:
    """Pairs with ``copy_distance <= threshold`` are near-duplicates; pairs whose best luma correlation is
    below ``screen`` are not scored in full. The rest says how the rule was chosen and what it promises."""

    threshold: float
    screen: float
    target_false_rate: float
    est_false_rate: float
    recall: dict[str, float] = field(default_factory=dict)
    null_source: str = "none"
    null_images: int = 0
    positives: int = 0
    seed: int = 0
    statistic: str = STATISTIC
    limited_by: str = ""  # "copies" (POSITIVE_MARGIN times their range) or "null" (the target false rate)
    warnings: tuple[str, ...] = ()
    label_conflicts: int = 0  # different-label pairs as close as a typical copy: left out of the null
    # Of the calibration drop's compared images (None: not measured), how many have any scored look-alike (any
    # label) within the threshold: what the rule folds there. Far above est_false_rate, the estimate is not to
    # be trusted (:attr:`fold_warning`).
    drop_images: int | None = None
    drop_folded: int | None = None

    @property
    def rule_id(self) -> str:
        """Identity of the decision (what is folded), not of how it was estimated."""
        key = f"{self.statistic}|{self.threshold:.6g}|{self.screen:.6g}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def drop_fold_rate(self) -> float | None:
        """The share of the calibration drop's compared images that the rule folds (None: not measured)."""
        return self.drop_folded / self.drop_images if self.drop_images else None

    @property
    def fold_warning(self) -> str | None:
        """The warning when the calibration drop folds FOLD_WARN_RATIO times what the rule expects (the target,
        or the estimate if higher) and at least FOLD_WARN_MIN_IMAGES images; None otherwise."""
        rate, folded = self.drop_fold_rate, self.drop_folded
        est = self.est_false_rate if np.isfinite(self.est_false_rate) else 0.0
        expected = max(self.target_false_rate, est)
        if rate is None or folded < FOLD_WARN_MIN_IMAGES or rate < FOLD_WARN_RATIO * expected:
            return None
        return (
            f"{rate:.2%} of the {self.drop_images} images this rule was calibrated on ({folded}) have a look-alike "
            f"within it, against an estimated false-duplicate rate of {est:.3%} from known-distinct pairs: either "
            "that drop holds this many near-duplicates, or look-alikes under one label that the known-distinct "
            "sample cannot see (one template with different glyphs, plain shapes) are folded. Look at the "
            "duplicate gallery and the class-balance check; if distinct images are folded, set the images config "
            f"`copy_distance_threshold` below {self.threshold:.4g}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"rule_id": self.rule_id}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NearDuplicateRule:
        data = json.loads(text)
        data.pop("rule_id", None)
        data["warnings"] = tuple(data.get("warnings", ()))
        return cls(**data)

    @classmethod
    def fixed(cls, threshold: float, screen: float = -1.0) -> NearDuplicateRule:
        """A rule given by hand: nothing estimated."""
        return cls(threshold=threshold, screen=screen, target_false_rate=float("nan"), est_false_rate=float("nan"),
                   null_source="fixed")  # fmt: skip


@dataclass
class Positives:
    """Planted copies of the calibration sample: distance and best correlation per copy, by transform.

    ``distance`` is the copies' scale: resized copies are scored without the views that make Pillow's 8-bit
    resize exactly (evidence._resized_views), as a copy by a resizer those views do not reproduce would be,
    so the copies' range (the threshold's headroom, the null's and the label conflicts' floors) keeps room for
    other tools. Our planted copies are Pillow's: with those views they lie at ~0, and a range taken from them
    collapsed (scikit-learn's digits in a test: threshold 0.005 instead of 0.074). ``reproduced`` is what
    curation computes for them (None: the same), which the recall estimates use."""

    kinds: np.ndarray
    distance: np.ndarray
    correlation: np.ndarray
    reproduced: np.ndarray | None = None

    @property
    def screen(self) -> float:
        if not len(self.correlation):
            return -1.0
        return float(min(SCREEN_CAP, np.quantile(self.correlation, SCREEN_QUANTILE) - SCREEN_MARGIN))

    @property
    def screened_distance(self) -> np.ndarray:
        """Distances as the rule sees them: inf where the screen drops the copy."""
        return np.where(self.correlation >= self.screen, self.distance, np.inf)

    @property
    def copy_range(self) -> float:
        """The largest per-transform COPY_QUANTILE of the copies' distances: the recall goal is per transform,
        and pooling lets the many exact-looking crops and shifts hide the re-encodes' tail (Fashion-MNIST:
        pooled, JPEG kept 98.0%; per transform 99.3%). Copies the screen drops are missed whatever the
        threshold and are left out."""
        ranges = []
        for kind in dict.fromkeys(self.kinds):
            d = self.screened_distance[self.kinds == kind]
            d = d[np.isfinite(d)]
            if len(d):
                ranges.append(float(np.quantile(d, COPY_QUANTILE)))
        return max(ranges, default=0.0)

    def recall(self, threshold: float, screen: float | None = None) -> dict[str, float]:
        """Share of these copies kept per transform at ``threshold``, behind ``screen`` (default: the screen
        these copies set; a stored rule's own when judging it on other images)."""
        seen = self.distance if self.reproduced is None else self.reproduced
        kept = (self.correlation >= (self.screen if screen is None else screen)) & (seen <= threshold)
        return {str(k): float(np.mean(kept[self.kinds == k])) for k in dict.fromkeys(self.kinds)}

    @property
    def conflict_floor(self) -> float:
        """Different-label pairs at or under this distance are label conflicts, not known distinct: the
        CONFLICT_QUANTILE of the copies that leave a residual. Copies reproduced exactly (re-encodes through
        their codec views, pixel crops and shifts) say nothing about how near one picture re-rendered lies;
        counted, they put the median at 0 and the same Adwaita icon filed under two contexts (0.006 apart)
        became a known-distinct pair that held the threshold under every resized copy."""
        d = self.screened_distance
        d = d[np.isfinite(d) & (d > 0)]
        return float(np.quantile(d, CONFLICT_QUANTILE)) if len(d) else 0.0

    def null_pairs(self, different_label: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Which scored candidate pairs are known distinct: different labels farther than a typical copy
        (:attr:`conflict_floor`), or any pair beyond the copies' range."""
        beyond = float(np.quantile(self.screened_distance, NULL_QUANTILE))
        distance = np.asarray(distance)
        return (np.asarray(different_label, bool) & (distance > self.conflict_floor)) | (distance > beyond)

    def label_conflicts(self, different_label: np.ndarray, distance: np.ndarray) -> int:
        """How many scored different-label pairs lie within :attr:`conflict_floor` (one picture, two labels)."""
        return int((np.asarray(different_label, bool) & (np.asarray(distance) <= self.conflict_floor)).sum())


def measure_positives(
    images: Sequence[np.ndarray],
    seed: int,
    encodings: Sequence[Encoding | None] | None = None,
    codec_views: bool = True,
    copy_scale: bool = True,
) -> Positives:
    """Every transform of :data:`TRANSFORMS` that :func:`applies` to each image (seeded), scored against its
    original as curation scores files: a JPEG or WebP copy with its file's encoding, and an original with
    ``encodings[i]`` (how its own file was encoded, when it was lossy). Without ``codec_views`` (a curation
    that cannot read files' encodings) every copy is scored on its pixels alone, as its files will be. With
    ``copy_scale`` the resized copies are scored once more without the 8-bit resize views for the copies'
    scale (:class:`Positives`); a rule fit, which reads only the recall, does without."""
    rng = np.random.default_rng(seed)
    originals, copies, kinds, codes = [], [], [], []
    for kind in TRANSFORMS:
        for k, image in enumerate(images):
            if not applies(image, kind):
                continue
            copy, code = plant_file(image, kind, rng)
            originals.append(image)
            copies.append(copy)
            kinds.append(kind)
            codes.append((encodings[k] if encodings is not None else None, code))
    n = len(originals)
    encoding = [c for c, _ in codes] + [c for _, c in codes]
    pairs, load = [(i, n + i) for i in range(n)], (originals + copies).__getitem__
    code = encoding.__getitem__ if codec_views else None
    reproduced, correlation = copy_evidence(pairs, load, encoding=code)
    if not copy_scale:
        return Positives(np.array(kinds), reproduced, correlation.astype(np.float64))
    # The copies' scale: resized copies once more, without the 8-bit resize views (see Positives). (Crops are of
    # another size too, but their pixel-scale alignment reproduces them whatever the resize views give.)
    resized = [i for i in range(n) if kinds[i] == "resize"]
    distance = reproduced.copy()
    distance[resized] = copy_evidence([pairs[i] for i in resized], load, encoding=code, eight_bit_resizes=False)[0]
    return Positives(np.array(kinds), distance, correlation.astype(np.float64), reproduced)


@dataclass(frozen=True)
class RuleFit:
    """How a stored rule does on planted copies of a later drop's new images (:func:`rule_fit`)."""

    rule_id: str
    sampled: int
    recall: dict[str, float]  # per transform, on this drop's copies
    promised: dict[str, float]  # per transform, the rule's own (from its calibration)
    short: dict[str, float]  # transforms kept FIT_TOLERANCE less than promised (at most 99%): recall here

    @property
    def fits(self) -> bool:
        return not self.short

    @property
    def message(self) -> str:
        if self.fits:
            return ""
        return (
            f"near-duplicate rule {self.rule_id} was calibrated on other images: on planted copies of "
            f"{self.sampled} of this run's new images it keeps "
            + ", ".join(f"{k} {v:.1%} (promised {self.promised.get(k, float('nan')):.1%})" for k, v in self.short.items())
            + "; copies of these images may be kept as distinct. Calibrate on everything with the images "
            "config `recalibrate: true` (every image is then compared again)"
        )


def rule_fit(
    rule: NearDuplicateRule,
    images: Sequence[np.ndarray],
    seed: int,
    encodings: Sequence[Encoding | None] | None = None,
    codec_views: bool = True,
) -> RuleFit:
    """Planted copies of ``images`` (a sample of a later drop) judged by ``rule``: the recall it gives them,
    against what it promised on the drop it was calibrated on."""
    positives = measure_positives(images, seed, encodings, codec_views, copy_scale=False)
    recall = positives.recall(rule.threshold, rule.screen)
    copies = {k: int(np.sum(positives.kinds == k)) for k in recall}
    short = {k: v for k, v in recall.items()
             if v < min(0.99, rule.recall.get(k, 1.0)) - FIT_TOLERANCE and round((1 - v) * copies[k]) >= FIT_MIN_MISSES}  # fmt: skip
    return RuleFit(rule.rule_id, len(images), recall, dict(rule.recall), short)


def nearest_distinct(
    a: np.ndarray, b: np.ndarray, distance: np.ndarray, distinct: np.ndarray, ids: Sequence
) -> np.ndarray:
    """For each of ``ids``, the smallest distance over the scored pairs (a, b) marked ``distinct`` that
    involve it (inf where none): the null sample, one value per image."""
    best = {i: np.inf for i in ids}
    for x, y, d in zip(a[distinct], b[distinct], distance[distinct]):
        if x in best and d < best[x]:
            best[x] = d
        if y in best and d < best[y]:
            best[y] = d
    return np.fromiter(best.values(), float, len(best))


def rule_from_pairs(
    positives: Positives,
    a: np.ndarray,
    b: np.ndarray,
    distance: np.ndarray,
    different_label: np.ndarray,
    ids: Sequence,
    target_false_rate: float = DEFAULT_TARGET_FALSE_RATE,
    labelled: bool = True,
    seed: int = 0,
) -> tuple[NearDuplicateRule, np.ndarray]:
    """:func:`choose_rule` from the scored candidate pairs (a, b) of the compared images ``ids``: each image's
    nearest known-distinct look-alike is the null, its nearest look-alike under any label gives the drop's fold
    rate, different-label pairs as close as a typical copy are label conflicts. Also returns which pairs were
    taken as known distinct."""
    known = positives.null_pairs(different_label, distance)
    null = nearest_distinct(a, b, distance, known, ids)
    nearest = nearest_distinct(a, b, distance, np.ones(len(distance), bool), ids)
    conflicts = positives.label_conflicts(different_label, distance)
    return choose_rule(positives, null, target_false_rate, labelled, seed, conflicts, nearest), known


def choose_rule(
    positives: Positives,
    null: np.ndarray,
    target_false_rate: float = DEFAULT_TARGET_FALSE_RATE,
    labelled: bool = True,
    seed: int = 0,
    label_conflicts: int = 0,
    nearest: np.ndarray | None = None,
) -> NearDuplicateRule:
    """The operating point: the loosest threshold whose estimated false-duplicate rate over ``null`` (one
    nearest-distinct distance per image, from :meth:`Positives.null_pairs`) is at most
    ``target_false_rate``, and at most ``POSITIVE_MARGIN`` times the copies' range. ``nearest`` (one nearest
    scored distance per compared image, any label) gives the share the rule folds in the calibration drop
    (``drop_fold_rate``), with a warning when it is far above what the null predicts."""
    if not len(positives.distance):
        raise ValueError("calibration needs at least one image to plant copies of")
    needed = positives.copy_range * POSITIVE_MARGIN
    null = np.sort(np.asarray(null, float))
    allowed = int(np.floor(target_false_rate * len(null)))
    threshold, limited_by = needed, "copies"
    if allowed < len(null) and null[allowed] <= needed:
        # Strictly below the (allowed+1)-th closest look-alike: at most `allowed` images have one within it.
        threshold, limited_by = float(np.nextafter(null[allowed], 0)), "null"
    est = float(np.mean(null <= threshold)) if len(null) else float("nan")
    recall = positives.recall(threshold)
    warnings = []
    low = {k: r for k, r in recall.items() if r < 0.99}
    if low:
        warnings.append(
            f"distinct look-alikes of this data set are as close as some copies: at the target false rate "
            f"{target_false_rate:g} the rule keeps {', '.join(f'{k} {r:.1%}' for k, r in low.items())} of planted copies"
        )
    if label_conflicts:
        warnings.append(
            f"{label_conflicts} look-alike pair(s) under different labels are as close as a typical planted copy "
            f"(copy distance <= {positives.conflict_floor:.4g}): one picture filed under two labels; they were "
            "left out of the known-distinct sample, fold as near-duplicates, and show as label conflicts"
        )
    measured = nearest is not None and len(nearest) > 0
    folded = int(np.sum(np.asarray(nearest, float) <= threshold)) if measured else None
    if len(null) and allowed == 0:
        warnings.append(f"only {len(null)} images in the null sample: a false rate of {target_false_rate:g} "
                        "cannot be resolved, the closest known-distinct look-alike bounds the threshold")  # fmt: skip
    rule = NearDuplicateRule(
        threshold=threshold,
        screen=positives.screen,
        target_false_rate=target_false_rate,
        est_false_rate=est,
        recall=recall,
        null_source=("different-label look-alikes, and look-alikes beyond the copies' range" if labelled
                     else "look-alikes beyond the copies' range (unlabelled: closer look-alikes are not seen)"),
        null_images=len(null),
        positives=len(positives.distance),
        seed=seed,
        limited_by=limited_by,
        warnings=tuple(warnings),
        label_conflicts=label_conflicts,
        drop_images=len(nearest) if measured else None,
        drop_folded=folded,
    )
    warning = rule.fold_warning
    return replace(rule, warnings=(*rule.warnings, warning)) if warning else rule
