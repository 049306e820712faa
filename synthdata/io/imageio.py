"""Safe decoding of untrusted image bytes, and the content id of an image.

Every failure mode of an upstream drop (empty file, non-image bytes, truncated data, decompression bombs,
absurd shapes) becomes an `ImageRejected` with a reason a person can act on; nothing else escapes.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

# Decoders we accept. Limiting them keeps exotic, rarely-audited decoders away from untrusted bytes.
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
FORMAT_EXTENSION = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


@dataclass(frozen=True)
class DecodeLimits:
    max_file_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000  # far above any training image, far below a bomb
    min_side: int = 1
    max_aspect: float = 20.0


class ImageRejected(Exception):
    """The bytes are not an image we accept; `reason` says why in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # fully loaded, mode L or RGB (or LA/RGBA flattened: see normalise_mode)
    format: str
    original_mode: str
    width: int
    height: int

    @property
    def pixels(self) -> np.ndarray:
        return np.asarray(self.image)


def normalise_mode(img: Image.Image) -> Image.Image:
    """Reduce the zoo of Pillow modes to L or RGB, the two every later stage understands.

    Alpha is composited on white (what a viewer shows), palettes are expanded, 16-bit and float grayscale
    are rescaled to 8 bits by their full range.
    """
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1", "P") and "transparency" not in img.info:
        return img.convert("RGB" if img.mode == "P" else "L")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(background, rgba).convert("RGB")
    return flat.convert("L") if img.mode == "LA" else flat


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode untrusted bytes fully (a header check misses truncation) or raise `ImageRejected`."""
    if len(data) == 0:
        raise ImageRejected("empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise ImageRejected(f"file too large: {len(data)} bytes > max_file_bytes {limits.max_file_bytes}")
    previous_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; reject at 1x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
            except UnidentifiedImageError:
                raise ImageRejected("not an image: no accepted decoder recognises the bytes") from None
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ImageRejected(f"decompression bomb: {e}") from None
            width, height = img.size
            _check_shape(width, height, limits)
            fmt = img.format or "UNKNOWN"
            original_mode = img.mode
            try:
                img.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise ImageRejected(f"decompression bomb: {e}") from None
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise ImageRejected(f"truncated or corrupt {fmt} data: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    return DecodedImage(normalise_mode(img), fmt, original_mode, width, height)


def _check_shape(width: int, height: int, limits: DecodeLimits) -> None:
    if width < limits.min_side or height < limits.min_side:
        raise ImageRejected(f"image too small: {width}x{height} < min_side {limits.min_side}")
    if width * height > limits.max_pixels:
        raise ImageRejected(f"decompression bomb: {width}x{height} = {width * height} pixels > max_pixels {limits.max_pixels}")
    aspect = max(width, height) / min(width, height)
    if aspect > limits.max_aspect:
        raise ImageRejected(f"absurd aspect ratio {width}x{height} ({aspect:.0f}:1 > max_aspect {limits.max_aspect:g}:1)")


def image_id(img: Image.Image) -> str:
    """Hex SHA-256 of the decoded pixels plus mode and size: equal for any two encodings of the same picture."""
    h = hashlib.sha256()
    h.update(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_training_array(img: Image.Image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """The normalised view a model trains on (mode, size); the stored original is never changed."""
    out = img.convert(mode) if img.mode != mode else img
    if size is not None and out.size != tuple(size):
        out = out.resize(tuple(size), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)
