"""Near-duplicate curation in DuckDB: found across drops, incremental, first seen wins."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from synthdata.curation.curate import curate
from synthdata.curation.ingest import ingest_partition
from synthdata.io.imageio import decode_image
from synthdata.io.store import BlobStore
from synthdata.io.warehouse import connect


def tiles(n: int, seed: int) -> list[np.ndarray]:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = int(rng.integers(0, p.shape[0] - 96)), int(rng.integers(0, p.shape[1] - 96))
        out.append(p[y : y + 96, x : x + 96].copy())
    return out


def save(path: Path, img: Image.Image, fmt: str = "PNG", **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def warehouse(tmp_path):
    landing = tmp_path / "landing"
    store = BlobStore(tmp_path / "store")
    con = connect(tmp_path / "w.duckdb")
    originals = tiles(24, seed=0)
    for i, t in enumerate(originals):
        save(landing / "2024-01-01" / f"c{i % 3}" / f"t{i:02d}.png", Image.fromarray(t))
    # Drop 2: copies of drop-1 images plus new images.
    d2 = landing / "2024-01-02" / "c0"
    save(d2 / "jpeg.jpg", Image.fromarray(originals[1]), "JPEG", quality=80)
    save(d2 / "bright.png", ImageEnhance.Brightness(Image.fromarray(originals[2])).enhance(1.12))
    save(d2 / "small.png", Image.fromarray(originals[3]).resize((60, 60), Image.Resampling.BICUBIC))
    save(d2 / "crop.png", Image.fromarray(originals[4][3:96, 2:96]))
    for i, t in enumerate(tiles(6, seed=99)):
        save(d2 / f"new{i}.png", Image.fromarray(t))
    return con, landing, store


def loader(store):
    return lambda key: np.asarray(decode_image(store.read(key)).image)


def test_near_duplicates_across_drops_are_folded_into_the_first_seen(warehouse):
    con, landing, store = warehouse
    ingest_partition(con, "2024-01-01", landing / "2024-01-01", landing, store, workers=0)
    first = curate(con, loader(store))
    assert (first.images, first.near_duplicates, first.new_compared) == (24, 0, 24)

    ingest_partition(con, "2024-01-02", landing / "2024-01-02", landing, store, workers=0)
    second = curate(con, loader(store))
    assert second.new_compared == 10  # only the new drop's images were compared
    near = con.execute(
        "SELECT member_source, representative_id FROM duplicate_groups WHERE kind = 'near' ORDER BY 1"
    ).fetchall()
    assert [Path(m).name for m, _ in near] == ["bright.png", "crop.png", "jpeg.jpg", "small.png"]
    kept = dict(con.execute("SELECT image_id, source_path FROM images").fetchall())
    assert all(kept[rep].startswith("2024-01-01/") for _, rep in near)  # first seen wins
    assert second.images == 24 + 6
    assert con.execute("SELECT sum(n_near_duplicates) FROM images").fetchone() == (4,)

    third = curate(con, loader(store))  # nothing new: nothing compared, same result
    assert third.new_compared == 0 and third.candidates == 0
    assert third.images == second.images and third.near_duplicates == 4


def test_changing_the_radius_recompares_everything(warehouse):
    con, landing, store = warehouse
    ingest_partition(con, "2024-01-01", landing / "2024-01-01", landing, store, workers=0)
    curate(con, loader(store), radius=10)
    again = curate(con, loader(store), radius=6)
    assert again.new_compared == 24


def test_near_duplicates_can_be_switched_off(warehouse):
    con, landing, store = warehouse
    for day in ("2024-01-01", "2024-01-02"):
        ingest_partition(con, day, landing / day, landing, store, workers=0)
    stats = curate(con, None, near_duplicates=False)
    assert stats.near_duplicates == 0 and stats.images == 34
