"""Pictures a person would rather look at than read: image grids and line plots, as PNG bytes."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image


def to_png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(image: Image.Image | bytes, side: int) -> np.ndarray:
    """uint8 (side, side, 3) preview, nearest-neighbour so pixels stay crisp.

    `image` is decoded already (a stored image: `BlobStore.decode(key).image`, under the store's limits) or
    encoded bytes, decoded under the default `DecodeLimits()`.
    """
    from synthdata.io.imageio import decode_image

    if isinstance(image, bytes):
        image = decode_image(image).image
    return np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.NEAREST))


def image_grid(images: np.ndarray, ncol: int = 10, scale: int = 4, pad: int = 1) -> bytes:
    """Tile uint8 images shaped (N, H, W) or (N, H, W, C) into one PNG, nearest-neighbour upscaled.

    Small images (8x8 digits) are unreadable at 1:1, hence the integer `scale`.
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"image_grid wants a non-empty (N, H, W[, C]) array, got shape {arr.shape}")
    arr = arr.astype(np.uint8)
    n, h, w, c = arr.shape
    if c == 1:
        arr = np.repeat(arr, 3, axis=3)
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = arr[i, ..., :3]
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return to_png_bytes(img)


def figure(width: float, height: float, ncols: int = 1):
    """A matplotlib figure and its axes (one per column) on the Agg backend (no display needed); finish it
    with :func:`figure_png`. Returns (pyplot, figure, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=(width, height), dpi=100)


def figure_png(plt, fig) -> bytes:
    """PNG bytes of a figure from :func:`figure`, which is closed (pyplot keeps every open figure)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def line_plot(
    series: Mapping[str, Sequence[float]],
    x: Sequence[float] | None = None,
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "",
) -> bytes:
    """Plot named series against a shared x axis (e.g. loss curves) and return PNG bytes."""
    plt, fig, ax = figure(6, 3.2)
    for name, values in series.items():
        xs = list(x) if x is not None else list(range(len(values)))
        ax.plot(xs[: len(values)], list(values), label=name, linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(loc="best", fontsize=8)
    return figure_png(plt, fig)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(png: bytes, alt: str = "image") -> str:
    """Markdown that renders the PNG inline (the Dagster UI shows data URIs in MetadataValue.md)."""
    return f"![{alt}]({png_data_uri(png)})"
