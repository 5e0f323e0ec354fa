"""Pure validation functions behind the Dagster asset checks: each returns a CheckOutcome, none imports dagster."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gan_core.data import SPLITS, DatasetFileError, load_split_arrays, read_dataset_info
from gan_core.sources import DatasetSpec


@dataclass(frozen=True)
class CheckOutcome:
    """Whether a check passed, a one-line explanation, and numbers to show beside it."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def check_split_sizes(path: str | os.PathLike[str], spec: DatasetSpec) -> CheckOutcome:
    try:
        sizes = read_dataset_info(path).split_sizes
    except DatasetFileError as error:
        return CheckOutcome(False, str(error))
    expected = spec.split_sizes
    if expected is None:
        empty = [name for name, size in sizes.items() if size == 0]
        return CheckOutcome(not empty, f"empty splits: {empty}" if empty else "all splits non-empty", sizes)
    ok = sizes == expected
    return CheckOutcome(ok, f"split sizes {sizes}" + ("" if ok else f", expected {expected}"), sizes)


def check_images(path: str | os.PathLike[str], spec: DatasetSpec) -> CheckOutcome:
    """uint8 images of the dataset's shape whose float view spans a real range inside [0, 1]."""
    try:
        info = read_dataset_info(path)
    except DatasetFileError as error:
        return CheckOutcome(False, str(error))
    if info.image_shape != spec.image_shape:
        return CheckOutcome(False, f"image shape {info.image_shape}, expected {spec.image_shape}")
    stats: dict[str, Any] = {}
    for split in SPLITS:
        images = load_split_arrays(path, split).images
        if images.size == 0:
            return CheckOutcome(False, f"split {split} has no images")
        low, high = int(images.min()), int(images.max())
        stats[f"{split}_min"], stats[f"{split}_max"] = low / 255, high / 255
        if high == low:
            return CheckOutcome(False, f"split {split} is constant ({low}): the data is blank", stats)
    return CheckOutcome(True, f"uint8 {'x'.join(map(str, spec.image_shape))} images, loaded range within [0, 1]", stats)


def check_classes(path: str | os.PathLike[str], spec: DatasetSpec) -> CheckOutcome:
    """Every class appears in every split."""
    counts: dict[str, list[int]] = {}
    for split in SPLITS:
        labels = load_split_arrays(path, split).labels
        counts[split] = np.bincount(labels, minlength=spec.num_classes).tolist()
    empty = {split: [c for c, n in enumerate(row) if n == 0] for split, row in counts.items()}
    empty = {split: classes for split, classes in empty.items() if classes}
    ok = not empty
    return CheckOutcome(
        ok,
        "every class present in every split" if ok else f"empty classes: {empty}",
        {f"{split}_class_counts": row for split, row in counts.items()},
    )


def check_checksums(path: str | os.PathLike[str], manifest: dict[str, Any]) -> CheckOutcome:
    """The dataset file records its sources' checksums, and they equal the raw step's manifest."""
    recorded = read_dataset_info(path).source_checksums
    if not recorded:
        return CheckOutcome(False, "no source checksums recorded in the dataset file")
    ok = recorded == manifest.get("files")
    return CheckOutcome(
        ok,
        "source checksums recorded and equal to the raw manifest"
        if ok
        else f"recorded checksums {recorded} differ from the raw manifest {manifest.get('files')}",
        {"files": len(recorded)},
    )


def check_samples_range(samples: np.ndarray) -> CheckOutcome:
    """Generated samples are finite and inside [0, 1]."""
    finite = bool(np.isfinite(samples).all())
    low, high = (float(samples.min()), float(samples.max())) if finite else (float("nan"), float("nan"))
    ok = finite and low >= 0.0 and high <= 1.0
    return CheckOutcome(ok, f"finite={finite}, range [{low:.4f}, {high:.4f}]", {"min": low, "max": high})


def check_sample_spread(samples: np.ndarray, real: np.ndarray, min_ratio: float = 0.5) -> CheckOutcome:
    """A cheap mode-collapse warning: per-pixel std of samples against that of real images (averaged)."""
    sample_std = float(samples.reshape(len(samples), -1).std(0).mean())
    real_std = float(real.reshape(len(real), -1).std(0).mean())
    ratio = sample_std / real_std if real_std > 0 else 0.0
    ok = ratio >= min_ratio
    return CheckOutcome(
        ok,
        f"sample spread / data spread = {ratio:.3f} (warn below {min_ratio})",
        {"sample_std": sample_std, "real_std": real_std, "ratio": ratio},
    )


def check_training_histories(histories: dict[int, tuple[list[dict[str, float]], int]]) -> CheckOutcome:
    """Every seed ({seed: (per-epoch history, epochs asked for)}) trained every epoch and ended with finite losses."""
    problems, finals = [], {}
    for seed, (history, epochs) in histories.items():
        last = history[-1] if history else {}
        finals[f"seed_{seed}_final_d_loss"] = last.get("d_loss", float("nan"))
        if len(history) != epochs:
            problems.append(f"seed {seed}: {len(history)} of {epochs} epochs")
        if not all(math.isfinite(last.get(key, float("nan"))) for key in ("d_loss", "g_loss")):
            problems.append(f"seed {seed}: non-finite final loss")
    return CheckOutcome(not problems, "; ".join(problems) or "all seeds trained to the end with finite losses", finals)


def check_log_likelihoods(scores: list[dict[str, float]]) -> CheckOutcome:
    """Every seed's mean test log-likelihood and its standard error are finite."""
    values = [score["mean_log_likelihood"] for score in scores]
    ok = all(math.isfinite(score["mean_log_likelihood"]) and math.isfinite(score["standard_error"]) for score in scores)
    return CheckOutcome(ok, f"mean test log-likelihoods {values}", {"values": values})
