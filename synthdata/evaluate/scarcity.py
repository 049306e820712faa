"""The scarcity study: does synthetic (or augmented) data help a classifier when real data is scarce?

For each fraction f of the real train split and each seed, the reference logistic regression is trained on four
arms and scored on real test (reporting) and real val (selection):
- real: a seeded, class-stratified f share of real train (at least one image per class);
- real_aug: those rows plus their augmented copies (rows whose parent is in the subset when parents are known;
  otherwise a seeded f share of the augmented rows, and the leak of other parents is noted);
- real_synth: the real rows plus a seeded, class-stratified f share of the synthetic set, so the synthetic:real
  ratio is the same at every fraction (the rule: n_synth(f) = round(f * n_synth) per class);
- real_aug_synth: all three.
Arms of one seed share the same real rows, so their differences are paired. The generator itself was trained
on all of real train: at 10% and 25% the study measures what a generator fit on more data than the classifier
sees can add, an upper bound on what one fit on the scarce data alone would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from synthdata.evaluate.utility import Seeded, fit_logistic_regression

ARMS = ("real", "real_aug", "real_synth", "real_aug_synth")


@dataclass(frozen=True)
class ScarcityCell:
    arm: str
    fraction: float
    test: Seeded
    val: Seeded  # empty when there is no val split
    rows: int  # training rows of the first seed


def stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a `fraction` share of each class (rounded, at least one per present class)."""
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(idx))))
        picks.append(rng.choice(idx, min(n, len(idx)), replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.array([], dtype=np.int64)


def format_fraction(f: float) -> str:
    return f"{f:g}"


def scarcity_study(
    real_x, real_y, synth_x, synth_y, aug_x, aug_y, aug_parent: np.ndarray | None,
    val_x, val_y, test_x, test_y, num_classes: int, *, seeds: Sequence[int], fractions: Sequence[float],
    deadline: float = math.inf,
) -> list[ScarcityCell]:  # fmt: skip
    """One cell per (arm, fraction); tensors in (the suite's common format), labels as int64 tensors.

    The first seed always runs in full; later seeds start only before `deadline` (a `time.perf_counter()`).
    """
    import torch

    from synthdata.evaluate.features import torch_threads

    real_np, synth_np = real_y.numpy(), synth_y.numpy()
    has_aug = aug_x is not None and len(aug_x) > 0
    arms = ARMS if has_aug else ("real", "real_synth")
    results: dict[tuple[str, float], dict[str, list[float]]] = {}
    rows: dict[tuple[str, float], int] = {}
    with torch_threads():
        for n_seed, seed in enumerate(seeds):
            if n_seed and time.perf_counter() > deadline:
                break
            for f in fractions:
                rng = np.random.default_rng([seed, int(round(f * 1e6))])
                real_idx = stratified(real_np, f, rng)
                synth_idx = stratified(synth_np, f, rng)
                parts = {"real": (real_x[real_idx], real_y[real_idx]), "synth": (synth_x[synth_idx], synth_y[synth_idx])}
                if has_aug:
                    if aug_parent is not None:
                        aug_idx = np.flatnonzero(np.isin(aug_parent, real_idx))
                    else:
                        aug_idx = np.sort(rng.choice(len(aug_x), int(round(f * len(aug_x))), replace=False))
                    parts["aug"] = (aug_x[aug_idx], aug_y[aug_idx])
                for arm in arms:
                    names = arm.split("_")
                    x = torch.cat([parts[n][0] for n in names])
                    y = torch.cat([parts[n][1] for n in names])
                    predict = fit_logistic_regression(x, y, num_classes, seed, subsample=1.0)
                    cell = results.setdefault((arm, f), {"test": [], "val": []})
                    cell["test"].append(float((predict(test_x) == test_y.numpy()).mean()))
                    if len(val_x):
                        cell["val"].append(float((predict(val_x) == val_y.numpy()).mean()))
                    rows.setdefault((arm, f), len(x))
    return [ScarcityCell(arm, f, Seeded(tuple(results[(arm, f)]["test"])), Seeded(tuple(results[(arm, f)]["val"])),
                         rows[(arm, f)]) for f in fractions for arm in arms]  # fmt: skip


def scarcity_notes(cells: Sequence[ScarcityCell], aug_parents_known: bool) -> list[str]:
    """When synthetic / augmented data helps or hurts, judged on paired per-seed test differences: "helps" when
    every seed gained, "hurts" when every seed lost, otherwise no clear effect."""
    by = {(c.arm, c.fraction): c for c in cells}
    notes = []
    for added, arm, base in (("synthetic", "real_synth", "real"), ("augmented", "real_aug", "real"),
                             ("synthetic", "real_aug_synth", "real_aug")):  # fmt: skip
        for f in sorted({c.fraction for c in cells}):
            if (arm, f) not in by or (base, f) not in by:
                continue
            a, b = np.array(by[(arm, f)].test.values), np.array(by[(base, f)].test.values)
            diff = a - b
            verdict = "helps" if (diff > 0).all() else "hurts" if (diff < 0).all() else "has no clear effect"
            notes.append(
                f"{added} data {verdict} at {f:.0%} of real train ({base} -> {arm}): test accuracy "
                f"{b.mean():.3f} -> {a.mean():.3f} ({diff.mean():+.3f} +/- {diff.std():.3f} over {len(diff)} seeds)"
            )
    if not aug_parents_known and any(c.arm == "real_aug" for c in cells):
        notes.append("augmented rows came without parent ids: each fraction took a share of all augmented rows, "
                     "so real_aug at 10%/25% also saw copies of real images outside the fraction")  # fmt: skip
    notes.append("the generator was trained on all of real train: at 10%/25% the real_synth arms are an upper bound "
                 "on what a generator fit on the scarce data alone would add")  # fmt: skip
    return notes
