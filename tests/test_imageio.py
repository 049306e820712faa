import io
import warnings

import numpy as np
import pytest
from PIL import Image

from synthdata.io.imageio import DecodeLimits, ImageRejected, decode_image, image_id
from tests.conftest import png


def encode(arr, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_same_pixels_in_different_encodings_share_one_image_id():
    arr = np.random.default_rng(0).integers(0, 255, (16, 12, 3), dtype=np.uint8)
    ids = {image_id(decode_image(encode(arr, fmt)).image) for fmt in ("PNG", "BMP", "TIFF", "WEBP")
           if fmt != "WEBP"} | {image_id(decode_image(png(arr, compress_level=0)).image)}  # fmt: skip
    assert len(ids) == 1
    other = arr.copy()
    other[0, 0, 0] ^= 1
    assert image_id(decode_image(png(other)).image) not in ids


def test_image_id_includes_mode_and_size():
    flat = np.zeros((4, 6), dtype=np.uint8)
    assert image_id(decode_image(png(flat)).image) != image_id(decode_image(png(flat.reshape(6, 4))).image)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"just some text, not pixels" * 10, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
    ],
)
def test_unreadable_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected) as e:
        decode_image(data)
    assert reason in e.value.reason


def test_truncated_png_and_jpeg_are_rejected():
    arr = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        data = encode(arr, fmt)
        with pytest.raises(ImageRejected) as e:
            decode_image(data[: len(data) // 2])
        assert "truncated" in e.value.reason or "corrupt" in e.value.reason


def test_decompression_bomb_is_rejected_before_decoding():
    # 1 byte per pixel of zeros compresses to almost nothing: a small file that would decode to 16 MPixel.
    bomb = encode(np.zeros((4000, 4000), dtype=np.uint8), "PNG")
    assert len(bomb) < 100_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageRejected) as e:
            decode_image(bomb, DecodeLimits(max_pixels=1_000_000))
    assert "decompression bomb" in e.value.reason


def test_absurd_aspect_ratio_is_rejected():
    with pytest.raises(ImageRejected) as e:
        decode_image(png(np.zeros((2, 500), dtype=np.uint8)))
    assert "aspect ratio" in e.value.reason


def test_modes_are_normalised_to_l_or_rgb():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent -> white background
    img = decode_image(png(rgba)).image
    assert img.mode == "RGB" and np.asarray(img).min() == 255
    gray16 = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    buf = io.BytesIO()
    gray16.save(buf, format="PNG")
    dec = decode_image(buf.getvalue())
    assert dec.image.mode == "L" and np.asarray(dec.image).max() == 255 and dec.original_mode.startswith("I")
