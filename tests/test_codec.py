"""Codec views (synthdata.dedup.codec): a lossy file compared with its partner encoded the way the file was."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from synthdata.dedup.calibrate import measure_positives, plant_file
from synthdata.dedup.codec import encode_like, encoding_of, lossy_file
from synthdata.dedup.evidence import copy_evidence
from tests.conftest import logo_art, text_tiles


def _file(image: np.ndarray | Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def test_the_encoding_is_read_from_a_lossy_header_and_from_nothing_else():
    photo = skimage.data.astronaut()[100:164, 200:264]
    colour = encoding_of(_file(photo, quality=85, subsampling=1))
    assert colour is not None and colour.mode == "RGB" and colour.subsampling == 1 and len(colour.qtables) == 2
    grey = encoding_of(_file(photo.mean(axis=2).astype(np.uint8), quality=85))
    assert grey is not None and grey.mode == "L" and len(grey.qtables) == 1
    assert encoding_of(_file(photo, quality=95)).qtables != encoding_of(_file(photo, quality=80)).qtables
    webp = _file(photo, "WEBP", quality=90)
    lossy = encoding_of(webp)
    assert lossy is not None and lossy.format == "WEBP" and lossy.mode == "RGB" and 0 < lossy.payload < len(webp)
    cmyk = _file(Image.fromarray(photo).convert("CMYK"), quality=90)  # decoded to RGB: re-encoding cannot match
    see_through = np.dstack([photo, np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))])
    alpha = _file(see_through, "WEBP", quality=90)  # composited on white at ingest: no encode reproduces it
    lossless = _file(photo, "WEBP", lossless=True)
    data = _file(photo, quality=90)
    others = (_file(photo, "PNG"), lossless, alpha, cmyk, data[:40], b"\xff\xd8\xff" + b"\0" * 64, webp[:12], b"")
    for other in others:
        assert encoding_of(other) is None


@pytest.mark.parametrize("quality", [75, 85, 95])
def test_a_picture_encoded_like_a_file_reproduces_the_file_made_from_it(quality):
    """Encoding the original with the copy's tables and subsampling gives the copy's pixels exactly, whatever
    the entropy coding (progressive, optimised Huffman), in colour at every subsampling and in grey."""
    photo = skimage.data.coffee()[60:108, 200:260]
    for image in (photo, np.asarray(Image.fromarray(photo).convert("L"))):
        for options in ({"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2},
                        {"progressive": True, "optimize": True}):  # fmt: skip
            copy = _file(image, quality=quality, **options)
            assert np.array_equal(encode_like(image, encoding_of(copy))[0], _decoded(copy)), options
    pixels, encoding = lossy_file(photo, "JPEG", quality)
    assert np.array_equal(encode_like(photo, encoding)[0], pixels)


@pytest.mark.parametrize("side", [16, 48])
def test_a_picture_encoded_at_the_qualities_that_give_a_webp_file_its_size_reproduces_it(side):
    """A WebP file keeps no quality, but libwebp's payload grows with it: among the qualities whose payload
    has the file's exact size, one reproduces a copy made with libwebp's defaults, pixel for pixel, in
    colour and in grey (a WebP of a grey image decodes to RGB; a planted copy is seen in its original's mode)."""
    photo = np.asarray(Image.fromarray(skimage.data.coffee()[60:188, 200:328]).resize((side, side)))
    for image in (photo, np.asarray(Image.fromarray(photo).convert("L"))):
        for quality in (80, 87, 95):
            data = _file(image, "WEBP", quality=quality)
            views = encode_like(image, encoding_of(data))
            with Image.open(io.BytesIO(data)) as img:
                assert any(np.array_equal(v, np.asarray(img)) for v in views), quality
            pixels, encoding = lossy_file(image, "WEBP", quality)
            assert pixels.shape == image.shape and encoding.mode == ("RGB" if image.ndim == 3 else "L")
            assert any(np.array_equal(v, pixels) for v in encode_like(image, encoding))


def test_re_encoded_copies_of_line_art_score_zero_and_a_changed_glyph_stays_as_far_as_it_was():
    """scikit-image's logo at 64 px on white: its JPEG and WebP copies (q80-95) lie at ~0.1 on their pixels
    (ringing and colour fringes on sharp edges, what kept half of the icons' copies beyond their distinct
    look-alikes) and at 0 with their files' encodings. The same drawing with a small square painted over,
    saved as JPEG or WebP, stays as far from the original with its encoding as without it (a codec view does
    not pull a distinct picture closer: the view whose residual is least wins, and for a real difference that
    is not it)."""
    art = logo_art()
    copies = [plant_file(art, kind, np.random.default_rng(seed)) for seed in range(4) for kind in ("jpeg", "webp")]
    images = [art, *(c for c, _ in copies)]
    encodings = [None, *(e for _, e in copies)]
    pairs = [(0, i) for i in range(1, len(images))]
    assert copy_evidence(pairs, images.__getitem__, encoding=encodings.__getitem__)[0].max() == 0.0
    assert copy_evidence(pairs, images.__getitem__)[0].min() > 0.08

    def painted(y: int, x: int, side: int, value: int) -> np.ndarray:
        out = art.copy()
        out[y : y + side, x : x + side] = value
        return out

    glyphs = [painted(8, 8, 6, 0), painted(50, 50, 6, 0), painted(30, 4, 5, 0), painted(4, 40, 6, 128)]
    lossless = copy_evidence([(0, i) for i in range(1, 5)], [art, *glyphs].__getitem__)[0]
    files = [lossy_file(g, fmt, q) for g in glyphs for fmt in ("JPEG", "WEBP") for q in (80, 95)]
    images = [art, *(f for f, _ in files)]
    encodings = [None, *(e for _, e in files)]
    pairs = [(0, i) for i in range(1, len(images))]
    with_codec = copy_evidence(pairs, images.__getitem__, encoding=encodings.__getitem__)[0]
    assert np.array_equal(with_codec, copy_evidence(pairs, images.__getitem__)[0])
    assert (with_codec >= 0.9 * np.repeat(lossless, 4)).all() and with_codec.min() > 0.35, (with_codec, lossless)


def test_codec_views_take_re_encoded_copies_to_zero_and_leave_the_screen_where_it_was():
    """Calibration scores planted copies as curation scores files. With codec views, JPEG and WebP copies of
    real photo tiles and text lie at 0, so the copies' range (and the threshold it allows) is set by the other
    transforms; their correlations, which the screen is calibrated on, are those of their pixels either way (a
    curation that cannot read files' encodings, ``codec_views=False``, screens the same pairs)."""
    photo = skimage.data.astronaut()
    images = [photo[y : y + 64, x : x + 64].copy() for y in range(0, 448, 96) for x in range(0, 448, 96)]
    images += text_tiles(16)
    with_codec, pixels = measure_positives(images, seed=0), measure_positives(images, seed=0, codec_views=False)
    lossy = np.isin(with_codec.kinds, ["jpeg", "webp"])
    assert with_codec.distance[lossy].max() == 0.0 and pixels.distance[lossy].min() > 0.0
    assert np.array_equal(with_codec.distance[~lossy], pixels.distance[~lossy])
    assert np.array_equal(with_codec.correlation, pixels.correlation) and with_codec.screen == pixels.screen
    assert with_codec.copy_range < pixels.copy_range


def test_webp_copies_with_tiny_payloads_are_reproduced():
    """scikit-image's 100 LFW non-face crops (25 px, some nearly plain): many of their WebP payloads are under
    128 bytes (36-456 here), where the size jumps about with quality (one crop is 56 bytes at q70-76, 60 at q80
    and q86-88, 64 at q81-85), so a search for the size finds a quality that is not the copy's. Every copy at
    q80-95 is reproduced (the search, with every quality tried only for images of at most 8x8 px, left 11)."""
    crops = [np.rint(f * 255).astype(np.uint8) for f in skimage.data.lfw_subset()[100:]]
    for i, crop in enumerate(crops):
        copy, encoding = plant_file(crop, "webp", np.random.default_rng(i))
        assert any(np.array_equal(v, copy) for v in encode_like(crop, encoding)), (i, encoding.payload)
