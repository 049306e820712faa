"""The batched pHash must equal imagehash.phash bit for bit on every image, not just on most."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
import skimage.data
from PIL import Image

from synthdata.color import rgb_to_l
from synthdata.datasets import load_digits_uint8
from synthdata.dedup.phash import (
    CROP_HASH_MIN_SIDE,
    crop_robust_hashes,
    hamming,
    phash_and_crop_hashes,
    phash_arrays,
    phash_images,
    to_signed,
    to_unsigned,
)
from synthdata.dedup.resample import resize_lanczos


def reference(images: list[Image.Image]) -> np.ndarray:
    return np.array([int(str(imagehash.phash(im)), 16) for im in images], dtype=np.uint64)


def varied_images(rng: np.random.Generator) -> list[Image.Image]:
    """>= 2,000 real and synthetic images: faces, photo crops of many sizes (odd, up/down-scaled, L and
    RGB, tall and wide), digits, noise and flat images."""
    images = [Image.fromarray(np.rint(f * 255).astype(np.uint8)) for f in skimage.data.lfw_subset()]  # 200
    digits, _, _ = load_digits_uint8()
    images += [Image.fromarray(d) for d in digits[::2]]  # 899 8x8
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.camera()]
    for i in range(900):
        photo = photos[i % 4]
        h = int(rng.integers(1, photo.shape[0] + 1))
        w = int(rng.integers(1, photo.shape[1] + 1))
        y, x = int(rng.integers(0, photo.shape[0] - h + 1)), int(rng.integers(0, photo.shape[1] - w + 1))
        im = Image.fromarray(photo[y : y + h, x : x + w])
        if i % 3 == 0:  # rescale the crop too: upscales and downscales, odd target sizes
            im = im.resize((int(rng.integers(3, 300)), int(rng.integers(3, 300))), Image.Resampling.BILINEAR)
        if i % 5 == 0:
            im = im.convert("L")
        images.append(im)
    for size in [(32, 32), (31, 33), (1, 1), (1, 64), (64, 1), (7, 200), (200, 7)] * 10:
        images.append(Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)))
    for value in (0, 1, 128, 255):
        images.append(Image.fromarray(np.full((40, 30), value, np.uint8)))  # flat: every coefficient ties
    images.append(Image.fromarray(photos[0]).convert("RGBA"))  # converted by Pillow itself
    images.append(Image.fromarray(photos[0]).convert("P"))
    return images


def test_bit_identical_to_imagehash_on_2000_varied_images() -> None:
    images = varied_images(np.random.default_rng(0))
    assert len(images) >= 2000
    want = reference(images)
    got = phash_images(images)
    mismatched = [(images[i].size, images[i].mode) for i in np.flatnonzero(got != want)]
    assert mismatched == []
    assert got.dtype == np.uint64
    assert len(set(got.tolist())) > 1500  # the hashes discriminate, this is not a degenerate match


def same_size_mixed_modes(rng: np.random.Generator, n: int, size: tuple[int, int]) -> list[Image.Image]:
    """``n`` photo crops of one size in shuffled modes: L and RGB (pasted directly) and modes Pillow converts
    itself, so every chunk of the batch mixes them and chunk boundaries fall inside each run."""
    photo = skimage.data.astronaut()
    w, h = size
    images = []
    for i in range(n):
        y, x = (int(v) for v in rng.integers(0, 512 - max(w, h), 2))
        im = Image.fromarray(photo[y : y + h, x : x + w])
        images.append(im.convert(["L", "RGB", "L", "RGB", "P", "RGBA", "LA", "1", "I;16"][i % 9]))
    return [images[i] for i in rng.permutation(n)]


def test_mixed_modes_of_one_size_across_chunks_match_imagehash() -> None:
    rng = np.random.default_rng(5)
    images = same_size_mixed_modes(rng, 700, (28, 28)) + same_size_mixed_modes(rng, 300, (64, 64))
    want = reference(images)
    assert np.array_equal(phash_images(images), want)
    phash, crops = phash_and_crop_hashes(images)
    assert np.array_equal(phash, want)
    # Hashes do not depend on how the images are batched (ingestion hashes batches of 256).
    parts = [phash_and_crop_hashes(images[s : s + 97]) for s in range(0, len(images), 97)]
    assert np.array_equal(np.concatenate([p for p, _ in parts]), want)
    assert np.array_equal(np.concatenate([c for _, c in parts]), crops)


def test_lazily_opened_images_are_loaded_and_match_imagehash() -> None:
    rng = np.random.default_rng(6)
    images = same_size_mixed_modes(rng, 12, (40, 30))[:6]
    encoded = []
    for im in images:
        buf = io.BytesIO()
        im.convert("RGB" if im.mode == "RGB" else "L").save(buf, "PNG")
        encoded.append(buf.getvalue())
    lazy = [Image.open(io.BytesIO(data)) for data in encoded]  # not decoded yet
    want = reference([Image.open(io.BytesIO(data)) for data in encoded])
    assert np.array_equal(phash_images(lazy), want)


def test_phash_arrays_gray_and_rgb_batches_match_imagehash() -> None:
    rng = np.random.default_rng(1)
    photo = skimage.data.astronaut()
    rgb = np.stack([photo[y : y + 45, x : x + 70] for y, x in rng.integers(0, 400, (64, 2))])
    assert np.array_equal(phash_arrays(rgb), reference([Image.fromarray(a) for a in rgb]))
    gray = rgb_to_l(rgb)
    assert np.array_equal(gray, np.stack([np.asarray(Image.fromarray(a).convert("L")) for a in rgb]))
    assert np.array_equal(phash_arrays(gray), phash_arrays(rgb))
    assert np.array_equal(phash_arrays(gray[::-2, ::2]), reference([Image.fromarray(a) for a in gray[::-2, ::2]]))
    assert phash_arrays(np.zeros((0, 5, 5), np.uint8)).shape == (0,)
    with pytest.raises(TypeError):
        phash_arrays(gray.astype(np.float32))


def test_resize_matches_pillow_lanczos_for_arbitrary_targets() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 260, 2))
        th, tw = (int(v) for v in rng.integers(1, 90, 2))
        image = rng.integers(0, 256, (1, h, w), dtype=np.uint8)
        want = np.asarray(Image.fromarray(image[0]).resize((tw, th), Image.Resampling.LANCZOS))
        assert np.array_equal(resize_lanczos(image, tw, th)[0], want), (h, w, th, tw)


def test_hamming_and_signed_round_trip() -> None:
    hashes = np.array([0, 1, 2**63, 2**64 - 1, 0x0F0F], dtype=np.uint64)
    signed = to_signed(hashes)
    assert signed.dtype == np.int64 and signed[2] == -(2**63) and signed[3] == -1
    assert np.array_equal(to_unsigned(signed), hashes)
    assert hamming(hashes, hashes).tolist() == [0] * 5
    assert hamming(hashes[0], hashes).tolist() == [0, 1, 1, 64, 8]
    assert hamming(signed[0], signed).tolist() == [0, 1, 1, 64, 8]  # same bits whichever storage


def block_mean_reference(images: list[Image.Image]) -> np.ndarray:
    """The crop-robust hash spelled out on imagehash's 32x32 thumbnail: 8x8 block sums above their median."""
    out = []
    for im in images:
        small = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.int64)
        blocks = small.reshape(8, 4, 8, 4).sum(axis=(1, 3)).ravel()
        bits = "".join("1" if b > np.median(blocks) else "0" for b in blocks)
        out.append(int(bits, 2) if min(im.size) >= CROP_HASH_MIN_SIDE else 0)
    return np.array(out, dtype=np.uint64)


def test_crop_robust_hashes_move_less_than_phash_under_crops() -> None:
    rng = np.random.default_rng(4)
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.camera()]
    originals, crops = [], []
    for i in range(80):
        photo = photos[i % 4]
        side = int(rng.integers(24, 129))
        y, x = (int(v) for v in rng.integers(0, min(photo.shape[:2]) - side, 2))
        tile = photo[y : y + side, x : x + side]
        cut = max(1, int(0.05 * side))
        top, left = (int(v) for v in rng.integers(0, cut + 1, 2))
        originals.append(Image.fromarray(tile))
        crops.append(Image.fromarray(np.ascontiguousarray(tile[top : side - cut + top, left : side - cut + left])))
    p_orig, c_orig = phash_and_crop_hashes(originals)
    p_crop, c_crop = phash_and_crop_hashes(crops)
    assert np.array_equal(p_orig, phash_images(originals))  # one pass gives both hashes
    assert np.array_equal(c_orig, crop_robust_hashes(originals))
    assert np.array_equal(c_orig, block_mean_reference(originals))
    crop_moves, phash_moves = hamming(c_orig, c_crop), hamming(p_orig, p_crop)
    assert np.median(crop_moves) < np.median(phash_moves)
    assert np.mean(crop_moves <= 10) >= 0.95
    # Tiny and flat images get no crop hash (0), which the candidate search skips.
    small = [Image.fromarray(d) for d in load_digits_uint8()[0][:5]]
    flat = [Image.fromarray(np.full((40, 40), 7, np.uint8))]
    assert crop_robust_hashes(small + flat).tolist() == [0] * 6
    assert CROP_HASH_MIN_SIDE > 8
    assert crop_robust_hashes([]).shape == (0,)


def test_hashes_are_the_same_when_pillow_canvases_cannot_be_mapped(monkeypatch) -> None:
    from synthdata.dedup import phash

    assert phash._canvas_maps_buffer()  # this Pillow maps them: the fast path is the one the other tests cover
    rng = np.random.default_rng(21)
    images = same_size_mixed_modes(rng, 300, (37, 29)) + same_size_mixed_modes(rng, 40, (64, 64))
    monkeypatch.setattr(phash, "_canvas_maps_buffer", lambda: False)  # as if a Pillow copied the buffer
    fallback_hashes, fallback_crops = phash_and_crop_hashes(images)
    assert np.array_equal(fallback_hashes, reference(images))
    monkeypatch.undo()
    fast_hashes, fast_crops = phash_and_crop_hashes(images)
    assert np.array_equal(fast_hashes, fallback_hashes) and np.array_equal(fast_crops, fallback_crops)
