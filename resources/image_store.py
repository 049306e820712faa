
from pathlib import Path

import dagster as dg

from synthdata.io.paths import resolve_within
from synthdata.io.store import BlobStore


class ImageStoreResource(dg.ConfigurableResource):
    """Where files live: the landing area drops arrive in, and everything the platform writes under its home."""

    home: str
    landing: str

    @property
    def home_path(self) -> Path:
        return Path(self.home).absolute()

    @property
    def landing_root(self) -> Path:
        return Path(self.landing).absolute()

    def store(self) -> BlobStore:
        return BlobStore(self.home_path / "store")

    def drop_dir(self, partition_date: str) -> Path:
        return resolve_within(self.landing_root, partition_date)

    def subdir(self, *parts: str) -> Path:
        path = resolve_within(self.home_path, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
