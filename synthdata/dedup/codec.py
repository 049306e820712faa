"""Codec views: a lossy file compared with its partner encoded the way the file was.

A JPEG re-encode of an image is that image's 8x8 block DCT coefficients divided by the file's quantization
tables and rounded, its chroma subsampled as the file says. Both are in the file's header. Encoding the
partner with those tables and that subsampling reproduces the copy: pixel for pixel when the copy was made
with libjpeg-turbo's default integer DCT (measured with Pillow and Debian's cjpeg, any subsampling, with or
without progressive or optimised Huffman coding), to a third of the plain residual with its float DCT (no
closer with pre-smoothing, which no re-encode reproduces). A distinct partner
encoded with the tables stays about as far from the file as its lossless self (docs/curation.md). So a
re-encoded copy is recognised whatever the data set's look-alikes, where the residual alone must tell JPEG's
ringing on small line art (48 px icons: half of the copies at q80-95 lay beyond distinct look-alikes) from a
real difference.

A lossy WebP file does not store its quality, but libwebp's output size grows with it: the partner is
encoded at the qualities that give the file's VP8 payload its exact size (a binary search, its neighbours
and the run of equal sizes after it, about 10 encodes; every quality for payloads of at most 128 bytes), and
each is a view. With libwebp's default settings one of them is the copy, pixel for pixel: of 300 Pillow copies
at q80-95, 299 of 48 px icons, 300 of 16 px icons and 300 of the mix; all 200 of LFW's crops and 300 each of
Fashion-MNIST and MNIST (sets the search was not tuned on; LFW's plain crops are why the scan goes by payload);
of 60 icons copied by Debian's cwebp with its defaults, 60. WebP files with an alpha channel are left out (their pixels are composited on white at
ingest, which no encode of the partner reproduces).

:func:`encoding_of` reads what a file says (header only; None for lossless or other formats) and
:func:`encode_like` applies it to other pixels; :mod:`synthdata.dedup.evidence` takes the codec views as more
views of :func:`~synthdata.dedup.evidence.copy_evidence`.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, JpegImagePlugin


@dataclass(frozen=True)
class Encoding:
    """How a lossy file was encoded: enough to encode other pixels the same way."""

    format: str  # "JPEG" or "WEBP"
    mode: str  # "L" or "RGB": the pixels the file is seen as (a WebP file decodes to RGB)
    qtables: tuple[tuple[int, ...], ...] = ()  # JPEG: the file's quantization tables, in its order
    subsampling: int = -1  # JPEG: Pillow's code, 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (-1 for grey)
    payload: int = 0  # WebP: bytes of the lossy VP8 bitstream


def encoding_of(data: bytes) -> Encoding | None:
    """The encoding of a lossy file's bytes (its header only), or None: a lossless or other format, another
    colour space than grey or RGB (CMYK JPEG decodes to RGB, so re-encoding would not reproduce it), a WebP
    with alpha, or a header that does not parse (the file was accepted at ingest, but a codec view is an
    optional view: it is simply not taken)."""
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_encoding(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_encoding(data)
    return None


def _jpeg_encoding(data: bytes) -> Encoding | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=["JPEG"])
            if img.mode not in ("L", "RGB") or not getattr(img, "quantization", None):
                return None
            tables = tuple(tuple(int(v) for v in img.quantization[k]) for k in sorted(img.quantization))
            return Encoding("JPEG", img.mode, tables, JpegImagePlugin.get_sampling(img))
    except Exception:  # a header that does not parse: no codec view
        return None


def _webp_chunks(data: bytes) -> dict[bytes, int]:
    """Sizes of a RIFF/WEBP file's chunks by tag (as far as they are well formed)."""
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.setdefault(tag, size)
        pos += 8 + size + (size & 1)
    return chunks


def _webp_encoding(data: bytes) -> Encoding | None:
    chunks = _webp_chunks(data)
    if b"VP8 " not in chunks or b"ALPH" in chunks or b"ANIM" in chunks:
        return None
    return Encoding("WEBP", "RGB", payload=chunks[b"VP8 "])


def encode_like(image: np.ndarray, encoding: Encoding) -> list[np.ndarray]:
    """``image`` (uint8, grey or RGB) encoded as ``encoding`` says and decoded again, in its mode: one view
    for JPEG, one per quality that gives a WebP file's payload size (none when no quality does)."""
    pil = Image.fromarray(np.asarray(image))
    if encoding.format == "WEBP":
        return [_decoded(data, encoding.mode) for data in _webp_like(pil, encoding.payload)]
    if pil.mode != encoding.mode:
        pil = pil.convert(encoding.mode)
    buf = io.BytesIO()
    subsampling = encoding.subsampling if encoding.mode == "RGB" and encoding.subsampling >= 0 else 0
    pil.save(buf, format="JPEG", qtables=[list(t) for t in encoding.qtables], subsampling=subsampling)
    return [_decoded(buf.getvalue(), encoding.mode)]


# Qualities tried each side of the binary search's answer: libwebp's size is not strictly monotone in quality.
_WEBP_NEIGHBOURS = 2
# Files whose payload is at most this many bytes are matched against every quality instead: that small, the size
# jumps about with quality (an 8x8 digit is ~100 bytes at most qualities, a plain 25 px LFW crop 56-66 bytes from
# q70 to q90), and the search missed the exact copy of 7 of 200 WebP copies of 8x8 digits and 13 of LFW's 200
# crops (first by pixel count, 8x8, which left out the crops). Every quality finds all of them; 16 px icons and
# Fashion-MNIST (payloads over ~140 bytes) need no scan, and a scan costs ~100 encodes where the search costs ~10.
_WEBP_SCAN_PAYLOAD = 128


def _webp_like(pil: Image.Image, payload: int) -> list[bytes]:
    """WebP files of ``pil`` at every quality near where its VP8 payload reaches ``payload`` bytes that gives
    exactly that size."""
    files: dict[int, tuple[int, bytes]] = {}

    def size(quality: int) -> int:
        if quality not in files:
            buf = io.BytesIO()
            pil.save(buf, format="WEBP", quality=quality)
            files[quality] = (_webp_chunks(buf.getvalue()).get(b"VP8 ", -1), buf.getvalue())
        return files[quality][0]

    if payload <= _WEBP_SCAN_PAYLOAD:  # a payload this small: sizes jump about with quality
        return [files[q][1] for q in range(101) if size(q) == payload]
    lo, hi = 0, 100
    while lo < hi:  # the first quality whose payload is at least the file's
        mid = (lo + hi) // 2
        if size(mid) < payload:
            lo = mid + 1
        else:
            hi = mid
    near = list(range(max(0, lo - _WEBP_NEIGHBOURS), min(100, lo + _WEBP_NEIGHBOURS) + 1))
    while near[-1] < 100 and size(near[-1]) == payload:  # small images: many qualities give one size
        near.append(near[-1] + 1)
    return [files[q][1] for q in near if size(q) == payload]


def _decoded(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img if img.mode == mode else img.convert(mode))


def lossy_file(image: np.ndarray, fmt: str, quality: int) -> tuple[np.ndarray, Encoding]:
    """``image`` (uint8, grey or RGB) saved as a ``fmt`` ("JPEG" or "WEBP") file of ``quality`` by Pillow: the
    pixels it decodes to, in the image's own mode (as a planted copy is seen), and its encoding as
    :func:`encoding_of` reads it from the file (planted copies and benchmarks: what a real file gives)."""
    pil = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    pil.save(buf, format=fmt, quality=quality)
    data = buf.getvalue()
    encoding = encoding_of(data)
    assert encoding is not None, f"Pillow wrote a {fmt} file whose header does not parse"
    if encoding.mode != pil.mode:  # a WebP file of a grey image decodes to RGB: seen as grey, like the original
        encoding = Encoding(encoding.format, pil.mode, encoding.qtables, encoding.subsampling, encoding.payload)
    return _decoded(data, pil.mode), encoding
