import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def png(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def digits():
    from synthdata.datasets import load_digits_uint8

    return load_digits_uint8()


def digits_with_planted_copies() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """The first 900 of scikit-learn's digits, their labels, and JPEG / brightness copies (alternating, seeded)
    of 60 of them: which ones (indices into the 900) and the copies. A drop whose rule must warn that it folds
    far more than it estimates (tests/test_calibrate.py, tests/test_curate_near.py)."""
    from synthdata.datasets import load_digits_uint8
    from synthdata.dedup.calibrate import plant_copy

    digits, labels, _ = load_digits_uint8()
    rng = np.random.default_rng(4)
    pick = rng.choice(900, 60, replace=False)
    copies = [plant_copy(digits[i], ("jpeg", "brightness_contrast")[k % 2], rng) for k, i in enumerate(pick)]
    return digits[:900], np.asarray(labels[:900]), pick, copies


def on_white(image: Image.Image) -> Image.Image:
    """An image with transparency composited on white, as RGB (transparent pixels have arbitrary colours)."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def logo_art() -> np.ndarray:
    """scikit-image's colour logo, composited on white and resized to 64 px: saturated line art."""
    import skimage.data

    return np.asarray(on_white(Image.fromarray(skimage.data.logo())).resize((64, 64), Image.Resampling.LANCZOS))


ADWAITA = Path("/usr/share/icons/Adwaita/48x48")  # Debian's adwaita-icon-theme (.ci/run installs it)


def adwaita_icons() -> list[tuple[str, np.ndarray]]:
    """(context, pixels) of the Adwaita theme's 48 px icons composited on white, plain ones left out."""
    out = []
    for path in sorted(ADWAITA.rglob("*.png")):
        with Image.open(path) as icon:
            flat = np.asarray(on_white(icon))
        if flat.mean(axis=2).std() >= 12:
            out.append((path.parent.name, flat))
    return out


def text_tiles(n: int = 64) -> list[np.ndarray]:
    """The first ``n`` 32 px tiles of scikit-image's scan of printed text: sharp glyphs at low contrast."""
    import skimage.data

    page = skimage.data.text()
    return [np.ascontiguousarray(page[y : y + 32, x : x + 32])
            for y in range(0, page.shape[0] - 31, 32) for x in range(0, page.shape[1] - 31, 32)][:n]  # fmt: skip


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    root.mkdir()
    return root


def query(paths, sql, params=()):
    """Rows of `sql` from a test's warehouse, read-only (a test never writes behind the pipeline's back)."""
    import duckdb

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core box: one intra-op thread is several times faster than two fighting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def webserver_over_one_ingested_day(tmp_path, digits):
    """`dagster-webserver` over the instance of a fresh home where one day's daily_ingest_job ran (150 digits)."""
    import dagster as dg

    from _webserver import ServedHome, serving, venv_command
    from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
    from dagster_project.instance import ensure_instance
    from dagster_project.jobs import daily_ingest_job
    from synthdata.io.landing import export_as_drops
    from synthdata.io.paths import SynthdataPaths

    day = "2024-01-01"
    images, labels, names = digits
    paths = SynthdataPaths(home=tmp_path / "home", landing=tmp_path / "home" / "landing").ensure()
    export_as_drops(images[:150], labels[:150], names, paths.landing, [day], seed=0)
    ensure_instance(paths.dagster_home)
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job], resources=build_resources(paths))
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        run = defs.resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key=day)
    assert run.success

    env = {**os.environ, "SYNTHDATA_HOME": str(paths.home), "DAGSTER_HOME": str(paths.dagster_home)}
    command = [venv_command("dagster-webserver"), "-m", "dagster_project.definitions"]
    with serving(command, env, tmp_path / "webserver.log") as url:
        yield ServedHome(url, paths, day, run.run_id)
