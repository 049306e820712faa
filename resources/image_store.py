from pathlib import Path

import dagster as dg
from pydantic import Field

from synthdata.io.imageio import DecodeLimits
from synthdata.io.paths import resolve_within
from synthdata.io.store import BlobStore


class ImageStoreResource(dg.ConfigurableResource):
    """Where files live (the landing area drops arrive in, and everything the platform writes under its home),
    and what a stored image may be: the decode limits, one setting for every stage that decodes an image
    (ingest, curation, splits and the leakage audit, training views, flags, galleries). Every size or shape
    rejection names the field to change here."""

    home: str
    landing: str
    max_pixels: int = Field(
        default=DecodeLimits.max_pixels,
        description="Hard ceiling on an image's declared pixels (the largest real drawing seen is 623 MP). "
        "A format that cannot be decoded reduced (all but JPEG) is decoded once in full, ~4 bytes per pixel.",
    )
    max_pixels_per_byte: float = Field(
        default=DecodeLimits.max_pixels_per_byte,
        description="Decompression bomb: images above decode_pixels with more pixels per compressed byte than "
        "this are rejected. Real images reach ~2,100 at most, flat bombs 5,300-23,600 (docs/curation.md).",
    )
    decode_pixels: int = Field(
        default=DecodeLimits.decode_pixels,
        description="Images with more pixels are decoded reduced by an integer factor to at most this many, for "
        "hashing, training views and thumbnails (JPEG in DCT draft mode); the stored original is untouched. "
        "Bounds memory per decode.",
    )
    max_aspect: float = Field(
        default=DecodeLimits.max_aspect,
        description="Longer side / shorter side. Real banners reach ~25:1; beyond this an image is a line.",
    )
    min_side: int = Field(default=DecodeLimits.min_side, description="Smallest side accepted, in pixels.")
    max_file_mb: int = Field(
        default=DecodeLimits.max_file_bytes // 2**20,
        description="Largest file accepted, judged before it is read (an uncompressed 48 MP TIFF is 144 MB).",
    )

    @property
    def home_path(self) -> Path:
        return Path(self.home).absolute()

    @property
    def landing_root(self) -> Path:
        return Path(self.landing).absolute()

    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_file_bytes=self.max_file_mb * 2**20, max_pixels=self.max_pixels,
            max_pixels_per_byte=self.max_pixels_per_byte, max_aspect=self.max_aspect, min_side=self.min_side,
            decode_pixels=self.decode_pixels,
        )  # fmt: skip

    def store(self) -> BlobStore:
        """The content-addressed store, decoding under these limits (`BlobStore.decode`)."""
        return BlobStore(self.home_path / "store", self.limits())

    def drop_dir(self, partition_date: str) -> Path:
        return resolve_within(self.landing_root, partition_date)

    def subdir(self, *parts: str) -> Path:
        path = resolve_within(self.home_path, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
