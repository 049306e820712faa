"""Images/second of the batched `augment_batch` vs a per-image Pillow/NumPy loop doing the same ops.

Run: python benchmarks/augment_speed.py [--gray-n 20000] [--rgb-n 5000] [--batch 512] [--threads 2] [--repeats 5]

Both sides apply the same op list with the same probabilities and ranges to the same images in the same run.
The loop is the usual torchvision-era recipe: uint8 array -> PIL image -> ops -> float array, each op computing
what the engine computes for it, done the cheap way a careful per-image author would (fairness both ways):
- parameters come from one Python `random.Random` (a scalar draw is cheaper there than from NumPy);
- contrast blends with the gray mean like `ImageEnhance.Contrast`, but takes the mean with NumPy instead of
  Pillow's Python loop over the histogram (the same image comes out, without the loop's cost);
- hue is the engine's rotation about the gray axis in YIQ, one `convert("RGB", matrix)`, not an HSV round trip;
- blur is the engine's `kernel_size` x `kernel_size` Gaussian, one `ImageFilter.Kernel` (PIL's GaussianBlur
  ignores the kernel size and costs more);
- noise is a window of a fixed bank of normals at a random offset, as in the engine, not fresh normals per pixel.
The loop still applies the ops one by one: resampling a geometric run once and fusing the colour stages into
one map is part of what the engine is measured on. It keeps no records or soft labels, which flatters it a little.

The two sides are timed in alternating rounds, so a burst of load from other jobs on a shared machine hits both;
each side's best round gives its throughput, and the median of the per-round ratios is printed beside.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing it
from synthdata.augment import (
    Affine,
    AugmentPolicy,
    ColorJitter,
    GaussianBlur,
    GaussianNoise,
    HFlip,
    RandomErasing,
    Rotate,
    augment_batch,
    noise_bank,  # the loop draws its noise from the engine's own bank
)
from synthdata.augment.ops.color import YIQ, YIQ_INV  # the loop rotates hue in the engine's colour space


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """The engine's own bank of normals (the same values), built when the loop first needs it."""
    return noise_bank(1, torch.device("cpu"))[: 1 << 20].numpy()


def bench_policy(rgb: bool) -> AugmentPolicy:
    """Geometry, colour, blur, noise and erasing: the ops a per-image loop would typically chain."""
    ops = [HFlip(p=0.5)] if rgb else []
    ops += [
        Rotate(p=0.5, degrees=(-15.0, 15.0)),
        Affine(p=0.5, translate=0.1, scale=(0.9, 1.1), shear=(-10.0, 10.0)),
        ColorJitter(p=0.8, brightness=0.2, contrast=0.2, saturation=0.2 if rgb else 0.0, hue=0.05 if rgb else 0.0),
        GaussianBlur(p=0.3, kernel_size=3, sigma=(0.1, 1.0)),
        GaussianNoise(p=0.5, std=(0.0, 0.05)),
        RandomErasing(p=0.5, area=(0.02, 0.2), aspect=(0.3, 3.3)),
    ]
    return AugmentPolicy(ops=ops)


def _affine_inverse_coeffs(w: int, h: int, t: tuple[float, float], s: float, sh: tuple[float, float]) -> tuple:
    """PIL wants the output->input map; invert centre-scale-shear-translate in closed form."""
    cx, cy = (w - 1) / 2, (h - 1) / 2
    kx, ky = math.tan(math.radians(sh[0])), math.tan(math.radians(sh[1]))
    a, b, c, d = s, s * kx, s * ky, s
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    ox, oy = cx + t[0] * w, cy + t[1] * h  # output point that the centre maps to
    # input = inv(L) @ (out - (ox, oy)) + (cx, cy)
    return (ia, ib, cx - ia * ox - ib * oy, ic, id_, cy - ic * ox - id_ * oy)


def _hue_matrix(turns: float) -> tuple[float, ...]:
    """PIL's 12-value RGB matrix for a hue rotation by `turns` in the YIQ plane (the engine's definition)."""
    ang = turns * 2 * math.pi
    rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(ang), math.sin(ang)], [0.0, -math.sin(ang), math.cos(ang)]])
    m = YIQ_INV @ rot @ YIQ  # the engine's colour space, inverted once
    return tuple(np.hstack([m, np.zeros((3, 1))]).ravel().tolist())


def _gaussian_kernel(size: int, sigma: float) -> ImageFilter.Kernel:
    """The engine's blur: a `size` x `size` Gaussian of `sigma`, normalised (PIL takes sizes 3 and 5)."""
    taps = [math.exp(-((i - size // 2) ** 2) / (2 * sigma * sigma)) for i in range(size)]
    total = sum(taps)
    taps = [t / total for t in taps]
    return ImageFilter.Kernel((size, size), [a * b for a in taps for b in taps], scale=1)


def _contrast(im: Image.Image, factor: float) -> Image.Image:
    """`ImageEnhance.Contrast(im).enhance(factor)`, with the gray mean from NumPy rather than a Python loop."""
    gray = np.asarray(im if im.mode == "L" else im.convert("L"))
    mean = int(gray.mean() + 0.5)
    return Image.blend(Image.new(im.mode, im.size, (mean,) * len(im.getbands())), im, factor)


def pil_augment(img_u8: np.ndarray, policy: AugmentPolicy, rng: random.Random) -> np.ndarray:
    """One image (H, W) or (H, W, 3) uint8 through the policy's ops with Pillow/NumPy; float32 [0, 1] out."""
    im = Image.fromarray(img_u8)
    w, h = im.size
    arr: np.ndarray | None = None
    for op in policy.ops:
        if rng.random() >= op.p:
            continue
        if arr is not None and not isinstance(op, (GaussianNoise, RandomErasing)):
            im, arr = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)), None
        if isinstance(op, HFlip):
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif isinstance(op, Rotate):
            im = im.rotate(rng.uniform(*op.degrees), resample=Image.Resampling.BILINEAR)
        elif isinstance(op, Affine):
            t = (rng.uniform(-op.translate, op.translate), rng.uniform(-op.translate, op.translate))
            shear = (rng.uniform(*op.shear), rng.uniform(*op.shear))
            coeffs = _affine_inverse_coeffs(w, h, t, rng.uniform(*op.scale), shear)
            im = im.transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
        elif isinstance(op, ColorJitter):
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(1 - op.brightness, 1 + op.brightness))
            im = _contrast(im, rng.uniform(1 - op.contrast, 1 + op.contrast))
            if im.mode == "RGB" and op.saturation > 0:
                im = ImageEnhance.Color(im).enhance(rng.uniform(1 - op.saturation, 1 + op.saturation))
            if im.mode == "RGB" and op.hue > 0:
                im = im.convert("RGB", _hue_matrix(rng.uniform(-op.hue, op.hue)))
        elif isinstance(op, GaussianBlur):
            im = im.filter(_gaussian_kernel(op.kernel_size, rng.uniform(*op.sigma)))
        elif isinstance(op, GaussianNoise):
            arr = np.asarray(im, dtype=np.float32) / 255.0 if arr is None else arr
            bank = _noise_bank()
            start = rng.randrange(bank.size - arr.size)
            noise = bank[start : start + arr.size].reshape(arr.shape)
            arr = np.clip(arr + np.float32(rng.uniform(*op.std)) * noise, 0.0, 1.0)
        elif isinstance(op, RandomErasing):
            arr = np.asarray(im, dtype=np.float32) / 255.0 if arr is None else arr.copy()
            area = rng.uniform(*op.area) * h * w
            aspect = math.exp(rng.uniform(math.log(op.aspect[0]), math.log(op.aspect[1])))
            eh, ew = min(h, round(math.sqrt(area * aspect))), min(w, round(math.sqrt(area / aspect)))
            y0, x0 = rng.randint(0, h - eh), rng.randint(0, w - ew)
            arr[y0 : y0 + eh, x0 : x0 + ew] = op.fill
    return np.asarray(im, dtype=np.float32) / 255.0 if arr is None else arr


def make_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (N, C, size, size) in [0, 1]: upsampled coarse noise, so blur and warps do real work."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, max(2, size // 4), max(2, size // 4), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def paired_times(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Wall seconds of each function per round, the functions alternating within every round."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return times


def run_case(name: str, images: torch.Tensor, batch: int, repeats: int) -> tuple[float, float]:
    """Images/second for (batched engine, per-image loop) on the same images; prints both and their ratio."""
    rgb = images.shape[1] == 3
    policy = bench_policy(rgb)
    n = images.shape[0]
    labels = torch.zeros(n, dtype=torch.long)
    ids = [f"{name}-{i}" for i in range(n)]

    def ours() -> None:
        for s in range(0, n, batch):
            augment_batch(images[s : s + batch], labels[s : s + batch], 10, ids[s : s + batch], policy, seed=0)

    u8 = (images.permute(0, 2, 3, 1) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    u8 = u8[..., 0] if not rgb else u8

    def loop() -> None:
        rng = random.Random(0)
        out = [pil_augment(u8[i], policy, rng) for i in range(n)]
        torch.from_numpy(np.stack(out))

    ours()  # warm-up: kernel caches, lazy imports, the noise bank
    t_ours, t_loop = paired_times([ours, loop], repeats)
    ips_ours, ips_loop = n / min(t_ours), n / min(t_loop)
    median_ratio = statistics.median(lo / us for us, lo in zip(t_ours, t_loop))
    print(
        f"{name:>11}: batched {ips_ours:>9,.0f} img/s ({1e6 / ips_ours:6.1f} us/img) | "
        f"per-image PIL/NumPy {ips_loop:>7,.0f} img/s ({1e6 / ips_loop:6.1f} us/img) | "
        f"ratio {ips_ours / ips_loop:5.1f}x (median of rounds {median_ratio:5.1f}x)  "
        f"({n} images, batch {batch}, {len(policy.ops)} ops, best of {repeats})"
    )
    return ips_ours, ips_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gray-n", type=int, default=20_000)
    parser.add_argument("--rgb-n", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    run_case("28x28 gray", make_images(args.gray_n, 1, 28), args.batch, args.repeats)
    run_case("64x64 RGB", make_images(args.rgb_n, 3, 64), args.batch, args.repeats)


if __name__ == "__main__":
    main()
