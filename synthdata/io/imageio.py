"""Safe decoding of untrusted image bytes, and the content id of an image.

Every failure mode of an upstream drop (empty file, non-image bytes, truncated or damaged data, a decoder that
raises anything at all, implausible sizes) becomes an `ImageRejected` with a reason a person can act on; nothing
else escapes `decode_image`. Size and shape reasons name the setting to raise.

Large images are data: they are decoded reduced (JPEG in DCT draft mode; other formats decoded once and shrunk in
strips) so no decode hands on more than `decode_pixels` pixels, and only what is implausible for its byte size or
beyond the hard ceiling `max_pixels` is called a bomb.

Importing this module switches off Pillow's own process-wide bomb limit (`Image.MAX_IMAGE_PIXELS`, 89 MP): it
would refuse real drawings of several hundred megapixels, and setting and restoring it per call races between
threads (curation decodes in a prefetch thread while the main thread does). `decode_image` enforces the limits
below instead, from the header, before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None

# Decoders we accept. Limiting them keeps exotic, rarely-audited decoders away from untrusted bytes.
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
FORMAT_EXTENSION = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}

# Pixels per strip when a large image is normalised and shrunk: bounds the working copy next to the decode.
_STRIP_PIXELS = 1 << 22


@dataclass(frozen=True)
class DecodeLimits:
    """What a file may be, for every stage that decodes one: ingest and everything that reads the store later.

    One setting for all of them: the fields of the `image_store` resource (`ImageStoreResource`, whose names
    match these but `max_file_mb`), carried by its `BlobStore`, so an image accepted at ingest is decoded the
    same way by curation, splits, training views, galleries and flags. Reasons name the field to change.

    `max_pixels_per_byte` is judged only above `decode_pixels` (a blank 1000x1000 page is a real image of ~130
    bytes). Calibrated on skimage's photos and drawings, 4x upscaled (nearest and bicubic) in every accepted
    format: at most ~2,100 pixels per byte (a binary silhouette or checkerboard in lossless WebP), ~290 in PNG;
    the issue's real clip-art PNGs reach ~620 (623 MP in >= 1 MB). A flat image reaches its codec's limit:
    ~7,900 (PNG, 1-bit or palette), ~5,300 (1-bit deflate TIFF), ~23,600 (lossless WebP) at 16 MP, more when
    larger. Flat 8-bit PNG (~1,000), GIF (~1,200) and RGB PNG (~340) overlap real drawings and cannot be told
    apart by ratio; `max_pixels` bounds what they cost (docs/curation.md, Decoding).
    """

    max_file_bytes: int = 256 * 1024 * 1024  # an uncompressed 48 MP TIFF/BMP is 144 MB
    max_pixels: int = 1_000_000_000  # hard ceiling: the largest real drawing seen is 623 MP
    max_pixels_per_byte: float = 5_000.0  # bomb: implausibly many pixels for the file's size
    max_aspect: float = 100.0  # real banners reach ~25:1 (816x33); a 1x4000 line is not an image
    min_side: int = 1
    decode_pixels: int = 64_000_000  # larger images are decoded reduced to at most this many pixels


def _raise_it(setting: str, value: object, verb: str = "raise") -> str:
    """The setting, its value, and where to change it: one place for every stage (resources/image_store.py)."""
    return f"{setting}={value}; {verb} it in the image_store resource config (ImageStoreResource.{setting})"


def file_too_large(n_bytes: int, limits: DecodeLimits) -> str:
    return f"file too large: {n_bytes} bytes, larger than {_raise_it('max_file_mb', limits.max_file_bytes // 2**20)}"


class ImageRejected(Exception):
    """The bytes are not an image we accept; `reason` says why in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # fully loaded, mode L or RGB; reduced by `scale` when the original is large
    format: str
    original_mode: str
    width: int  # of the original file, not of the (possibly reduced) decode
    height: int
    image_id: str  # see `decode_image` for how a reduced decode is identified
    scale: int = 1  # 1 = decoded in full; k = each side is ~1/k of the original

    @property
    def pixels(self) -> np.ndarray:
        return np.asarray(self.image)


def normalise_mode(img: Image.Image, value_range: tuple[float, float] | None = None) -> Image.Image:
    """Reduce the zoo of Pillow modes to L or RGB, the two every later stage understands.

    Alpha is composited on white (what a viewer shows), palettes are expanded, 16-bit and float grayscale
    are rescaled to 8 bits by their full range (`value_range`, when a strip of a larger image is normalised).
    Every step but that range is per pixel, so normalising strips gives the rows of normalising the whole.
    """
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1", "P") and "transparency" not in img.info:
        return img.convert("RGB" if img.mode == "P" else "L")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = value_range if value_range is not None else (float(arr.min()), float(arr.max()))
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(background, rgba).convert("RGB")
    return flat.convert("L") if img.mode == "LA" else flat


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode untrusted bytes fully (a header check misses truncation) or raise `ImageRejected`.

    Identity (`DecodedImage.image_id`): the SHA-256 of `mode:WxH:` + the normalised pixels at full size, also
    when the decode is reduced (the full-size rows are hashed strip by strip on the way), so every lossless
    encoding of the same pixels shares one id at any size. The one exception is a JPEG larger than
    `decode_pixels`: it is decoded in draft mode (DCT scaling) and its full pixels never exist, so its id is
    the SHA-256 of `mode:WxH:file:` + the file's bytes. Copies of the file share it; a re-encode gets another
    id and is left to near-duplicate search. (Hashing the draft pixels instead would make two different photos
    that agree at 1/8 scale one "exact" duplicate and silently drop one of them.)
    """
    if len(data) == 0:
        raise ImageRejected("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise ImageRejected(file_too_large(len(data), limits))
    with warnings.catch_warnings():
        # Damaged files make Pillow warn per file (EXIF, truncated reads); the reason, not the log, reports them.
        warnings.simplefilter("ignore")
        img = _open(data)
        fmt = img.format or "UNKNOWN"
        original_mode, (width, height) = img.mode, img.size
        _check_shape(width, height, len(data), limits)
        try:
            return _decode(img, data, fmt, original_mode, limits)
        except ImageRejected:
            raise
        except MemoryError:
            raise ImageRejected(f"out of memory: decoding {width}x{height} {fmt} ({original_mode})") from None
        except Exception as e:  # a damaged file makes decoders raise every kind of error
            raise ImageRejected(f"truncated or corrupt {fmt} data: {describe_error(e)}") from None


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except UnidentifiedImageError:
        raise ImageRejected("not an image: no accepted decoder recognises the bytes") from None
    except MemoryError:
        raise ImageRejected("out of memory: reading the image header") from None
    except Exception as e:  # header parsers of damaged files raise anything (struct.error, ...)
        raise ImageRejected(f"corrupt image header: {describe_error(e)}") from None


def describe_error(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _check_shape(width: int, height: int, n_bytes: int, limits: DecodeLimits) -> None:
    if width < limits.min_side or height < limits.min_side:
        smallest = _raise_it("min_side", limits.min_side, "lower")
        raise ImageRejected(f"image too small: {width}x{height}, a side below {smallest}")
    pixels = width * height
    if pixels > limits.max_pixels:
        ceiling = _raise_it("max_pixels", limits.max_pixels)
        raise ImageRejected(f"too many pixels: {width}x{height} = {pixels}, larger than {ceiling}")
    ratio = pixels / n_bytes
    if pixels > limits.decode_pixels and ratio > limits.max_pixels_per_byte:
        raise ImageRejected(
            f"decompression bomb: {width}x{height} = {pixels} pixels in {n_bytes} bytes ({ratio:.0f} pixels per byte), "
            f"more than {_raise_it('max_pixels_per_byte', f'{limits.max_pixels_per_byte:g}')}"
        )
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > limits.max_aspect:
        beyond = _raise_it("max_aspect", f"{limits.max_aspect:g}")
        raise ImageRejected(f"absurd aspect ratio: {width}x{height} ({aspect:.0f}:1), beyond {beyond}")


def _reduction(width: int, height: int, budget: int) -> int:
    """The smallest integer factor that brings width x height within `budget` pixels."""
    budget = max(1, budget)
    k = max(1, math.ceil(math.sqrt(width * height / budget)))
    while math.ceil(width / k) * math.ceil(height / k) > budget:
        k += 1
    return k


def _decode(img: Image.Image, data: bytes, fmt: str, original_mode: str, limits: DecodeLimits) -> DecodedImage:
    width, height = img.size
    if fmt == "JPEG" and width * height > limits.decode_pixels:
        k = _reduction(width, height, limits.decode_pixels)
        if img.draft(None, (math.ceil(width / k), math.ceil(height / k))) is not None:
            img.load()
            reduced, _ = _shrink(img, limits.decode_pixels, None)
            iid = _sha256(f"{reduced.mode}:{width}x{height}:file:".encode(), data)
            return DecodedImage(reduced, fmt, original_mode, width, height, iid, round(width / reduced.width))
    img.load()
    if width * height <= limits.decode_pixels:
        full = normalise_mode(img)
        return DecodedImage(full, fmt, original_mode, width, height, image_id(full))
    hasher = hashlib.sha256()
    reduced, scale = _shrink(img, limits.decode_pixels, hasher)
    return DecodedImage(reduced, fmt, original_mode, width, height, hasher.hexdigest(), scale)


def _shrink(img: Image.Image, budget: int, hasher: hashlib._Hash | None) -> tuple[Image.Image, int]:
    """Normalise and shrink a loaded image by an integer factor to within `budget` pixels, strip by strip.

    Equal to `normalise_mode(img).reduce(k)` (box filter; strips are whole multiples of k rows), but the
    normalised full-size copy never exists: next to the decode, memory holds one strip and the result. When
    `hasher` is given it receives `mode:WxH:` and the normalised full-size rows, i.e. what `image_id` hashes.
    """
    width, height = img.size
    k = _reduction(width, height, budget)
    if k == 1 and hasher is None:  # a JPEG draft already within budget
        return normalise_mode(img), 1
    value_range = img.getextrema() if img.mode in ("I;16", "I;16B", "I;16L", "I", "F") else None
    rows = k * max(1, _STRIP_PIXELS // (width * k))
    out: Image.Image | None = None
    for top in range(0, height, rows):
        strip = normalise_mode(img.crop((0, top, width, min(height, top + rows))), value_range)
        if out is None:
            out = Image.new(strip.mode, (math.ceil(width / k), math.ceil(height / k)))
            if hasher is not None:
                hasher.update(f"{strip.mode}:{width}x{height}:".encode())
        if hasher is not None:
            hasher.update(strip.tobytes())
        out.paste(strip.reduce(k) if k > 1 else strip, (0, top // k))
    assert out is not None
    return out, k


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def image_id(img: Image.Image) -> str:
    """Hex SHA-256 of the decoded pixels plus mode and size: equal for any two encodings of the same picture."""
    return _sha256(f"{img.mode}:{img.width}x{img.height}:".encode(), img.tobytes())


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_training_array(img: Image.Image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """The normalised view a model trains on (mode, size); the stored original is never changed."""
    out = img.convert(mode) if img.mode != mode else img
    if size is not None and out.size != tuple(size):
        out = out.resize(tuple(size), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)
