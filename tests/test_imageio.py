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


def test_more_pixels_than_the_ceiling_are_rejected_before_decoding():
    bomb = encode(np.zeros((4000, 4000), dtype=np.uint8), "PNG")
    assert len(bomb) < 100_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageRejected) as e:
            decode_image(bomb, DecodeLimits(max_pixels=1_000_000))
    assert e.value.reason.startswith("too many pixels")


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


# --- large images are data, not attacks -------------------------------------------------------------------
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def test_real_pictures_decode_in_every_accepted_format_and_lossless_copies_share_an_id(digits):
    from skimage import data

    for picture in (data.astronaut()[100:228, 150:278], digits[0][7]):
        img = Image.fromarray(picture)
        lossless = [encode(picture, f) for f in ("PNG", "BMP", "TIFF")]
        if picture.ndim == 3:  # WebP has no grayscale mode: it stores L as RGB, and the id includes the mode
            lossless.append(encode(picture, "WEBP", lossless=True))
        assert len({decode_image(b).image_id for b in lossless}) == 1
        for fmt in ("JPEG", "WEBP", "GIF"):
            dec = decode_image(encode(np.asarray(img), fmt))
            assert dec.image.size == img.size and dec.scale == 1 and dec.format == fmt


def test_a_48_megapixel_photo_is_accepted_and_decoded_in_full():
    photo = encode(np.asarray(astronaut().resize((8000, 6000), Image.Resampling.BICUBIC)), "JPEG", quality=90)
    dec = decode_image(photo)  # the old default of 40 MP rejected it as a bomb
    assert (dec.width, dec.height, dec.scale) == (8000, 6000, 1) and dec.image.size == (8000, 6000)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP", "WEBP"])
def test_a_large_image_is_decoded_reduced_with_the_id_of_its_full_pixels(fmt):
    # decode_pixels scaled down so a 1 MP upscaled photo plays a 600 MP drawing: same code path, small test.
    limits = DecodeLimits(decode_pixels=130_000)
    big = np.asarray(astronaut().resize((1200, 875), Image.Resampling.BICUBIC))
    data = encode(big, fmt, lossless=True) if fmt == "WEBP" else encode(big, fmt)
    reduced = decode_image(data, limits)
    full = decode_image(data, DecodeLimits())
    assert (reduced.width, reduced.height, reduced.scale) == (1200, 875, 3)
    assert reduced.image.size == (400, 292) and reduced.image.width * reduced.image.height <= 130_000
    assert reduced.image_id == full.image_id == image_id(full.image)  # identity does not depend on the decode
    assert np.array_equal(np.asarray(reduced.image), np.asarray(full.image.reduce(3)))


@pytest.mark.parametrize("mode", ["P", "PA", "RGBA", "I;16", "CMYK", "1"])
def test_shrinking_in_strips_equals_shrinking_the_whole_image_in_every_mode(mode):
    from synthdata.io.imageio import normalise_mode

    photo = astronaut().resize((700, 530))
    img = {
        "P": photo.quantize(32), "PA": photo.quantize(32), "RGBA": photo.convert("RGBA"),
        "I;16": Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 200), "CMYK": photo.convert("CMYK"),
        "1": photo.convert("1"),
    }[mode]  # fmt: skip
    kw = {"transparency": 5} if mode in ("P", "PA") else {}
    data = encode(np.asarray(img), "TIFF") if mode in ("CMYK", "I;16") else _save(img, "PNG", **kw)
    dec = decode_image(data, DecodeLimits(decode_pixels=50_000))
    whole = normalise_mode(Image.open(io.BytesIO(data)))
    assert dec.scale == 3 and np.array_equal(np.asarray(dec.image), np.asarray(whole.reduce(3)))
    assert dec.image_id == image_id(whole)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_a_large_jpeg_is_decoded_in_draft_mode_and_identified_by_its_file():
    limits = DecodeLimits(decode_pixels=1_000_000)
    data = encode(np.asarray(astronaut().resize((2400, 1800), Image.Resampling.BICUBIC)), "JPEG", quality=90)
    dec = decode_image(data, limits)
    # DCT scaling by 1/2, 1/4 or 1/8 (Pillow picks): the full pixels never exist
    assert dec.scale in (2, 4) and dec.image.size == (2400 // dec.scale, 1800 // dec.scale)
    assert decode_image(bytes(data), limits).image_id == dec.image_id  # a copy of the file: the same id
    tagged = _save(Image.open(io.BytesIO(data)), "JPEG", quality=90, comment=b"re-saved")
    assert decode_image(tagged, limits).image_id != dec.image_id  # another file: left to near-duplicate search


def test_a_flat_bomb_is_rejected_but_a_large_real_drawing_of_similar_size_is_not():
    from skimage import data

    bomb = _save(Image.new("1", (10000, 10000)), "PNG")  # 100 MP in ~12 KB
    with pytest.raises(ImageRejected) as e:
        decode_image(bomb)
    assert e.value.reason.startswith("decompression bomb")
    where = "raise it in the image_store resource config (ImageStoreResource.max_pixels_per_byte)"
    assert f"max_pixels_per_byte=5000; {where}" in e.value.reason
    # The same claim at a real drawing's density passes: clip art upscaled past decode_pixels (scaled down here).
    drawing = _save(Image.fromarray(data.logo()).resize((3000, 3000), Image.Resampling.NEAREST).quantize(64), "PNG")
    assert decode_image(drawing, DecodeLimits(decode_pixels=1_000_000)).scale == 3


def test_a_header_beyond_the_hard_ceiling_is_rejected_before_any_pixel_is_decoded():
    import struct
    import zlib

    small = encode(np.zeros((4, 4), dtype=np.uint8), "PNG")
    ihdr = struct.pack(">II", 40_000, 40_000) + small[24:29]  # claims 1.6 gigapixels
    forged = small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]
    with pytest.raises(ImageRejected) as e:
        decode_image(forged)
    assert e.value.reason == (
        "too many pixels: 40000x40000 = 1600000000, larger than max_pixels=1000000000; "
        "raise it in the image_store resource config (ImageStoreResource.max_pixels)"
    )


def test_real_banners_pass_and_every_size_or_shape_reason_names_its_setting():
    banner = encode(np.asarray(astronaut().resize((816, 33))), "PNG")
    assert decode_image(banner).image.size == (816, 33)
    cases = {
        "max_aspect": (encode(np.zeros((1, 4000), dtype=np.uint8), "PNG"), DecodeLimits()),
        "max_file_mb": (banner, DecodeLimits(max_file_bytes=1000)),
        "max_pixels": (banner, DecodeLimits(max_pixels=10_000)),
        "min_side": (banner, DecodeLimits(min_side=40)),
    }
    for setting, (data, limits) in cases.items():
        with pytest.raises(ImageRejected) as e:
            decode_image(data, limits)
        verb = "lower" if setting == "min_side" else "raise"  # a smaller minimum lets more through
        where = f"; {verb} it in the image_store resource config (ImageStoreResource.{setting})"
        assert where in e.value.reason, e.value.reason
