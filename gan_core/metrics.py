"""Sample-quality metrics on arrays (features or pixels), usable without Dagster; k-NN work is blocked.

- Fréchet distance and kernel distance (KID: unbiased MMD^2, cubic polynomial kernel, over random subsets);
- improved precision and recall (Kynkäänniemi et al. 2019, k = 3) and density and coverage (Naeem et al. 2020, k = 5);
- class coverage and KL(sample class histogram || data class distribution), the mode-collapse measure;
- a classifier-based inception score; the nearest-training-image distance ratio, which flags memorisation.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import nn

from gan_core.classifier import embed, predict
from gan_core.data import load_split, load_split_arrays
from gan_core.devices import resolve_device


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) of Gaussians fitted to two feature sets."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU features make the product singular; handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular product: regularise as the reference FID code does
        offset = np.eye(len(cov_a)) * 1e-6
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = root.real
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    return float(max(distance, 0.0))  # rounding can leave -1e-12 for identical sets


def kernel_distance(
    features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: mean and std over random subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"kernel_distance needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    values = []

    def kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        base = (p @ q.T) / dim + 1
        return base * base * base  # 7x faster than `base ** 3` (numpy's general power), equal to the last bit or so

    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (size * (size - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _blocked_distances(x: torch.Tensor, y: torch.Tensor, block: int):  # noqa: ANN202
    for start in range(0, len(x), block):
        yield start, torch.cdist(x[start : start + block], y)


def kth_neighbour_radii(features: np.ndarray, k: int, block: int = 1024, device: str = "auto") -> np.ndarray:
    """Distance from each row to its k-th nearest other row (blocked)."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=resolve_device(device))
    radii = torch.empty(len(x), device=resolve_device(device))
    for start, dist in _blocked_distances(x, x, block):
        radii[start : start + len(dist)] = dist.topk(k + 1, dim=1, largest=False).values[:, k]  # 0th is itself
    return radii.cpu().numpy()


def _ball_hits(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int, device: str) -> np.ndarray:
    """hits[i, j-block] -> per point: how many centre balls contain it (counts) -- returned as counts per point."""
    p = torch.as_tensor(np.asarray(points), dtype=torch.float32, device=resolve_device(device))
    c = torch.as_tensor(np.asarray(centres), dtype=torch.float32, device=resolve_device(device))
    r = torch.as_tensor(radii, dtype=torch.float32, device=resolve_device(device))
    counts = torch.empty(len(p), device=resolve_device(device))
    for start, dist in _blocked_distances(p, c, block):
        counts[start : start + len(dist)] = (dist <= r[None, :]).sum(1).float()
    return counts.cpu().numpy()


def _nearest(points: np.ndarray, centres: np.ndarray, block: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    p = torch.as_tensor(np.asarray(points), dtype=torch.float32, device=resolve_device(device))
    c = torch.as_tensor(np.asarray(centres), dtype=torch.float32, device=resolve_device(device))
    best = torch.empty(len(p), device=resolve_device(device))
    index = torch.empty(len(p), dtype=torch.long, device=resolve_device(device))
    for start, dist in _blocked_distances(p, c, block):
        values, idx = dist.min(1)
        best[start : start + len(dist)], index[start : start + len(dist)] = values, idx
    return best.cpu().numpy(), index.cpu().numpy()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, block: int = 1024, device: str = "auto"):  # noqa: ANN201
    """Improved precision (fake inside the real manifold) and recall (real inside the fake manifold)."""
    real_radii = kth_neighbour_radii(real, k, block, device)
    fake_radii = kth_neighbour_radii(fake, k, block, device)
    precision = float((_ball_hits(fake, real, real_radii, block, device) > 0).mean())
    recall = float((_ball_hits(real, fake, fake_radii, block, device) > 0).mean())
    return precision, recall


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5, block: int = 1024, device: str = "auto"):  # noqa: ANN201
    """Density: mean number of real k-NN balls holding each fake, over k. Coverage: real balls holding any fake."""
    real_radii = kth_neighbour_radii(real, k, block, device)
    density = float(_ball_hits(fake, real, real_radii, block, device).sum() / (k * len(fake)))
    nearest_fake, _ = _nearest(real, fake, block, device)
    coverage = float((nearest_fake <= real_radii).mean())
    return density, coverage


def class_statistics(
    sample_probs: np.ndarray, data_labels: np.ndarray, num_classes: int, min_share: float = 0.1
) -> tuple[float, float, np.ndarray]:
    """(class coverage, KL(sample histogram || data distribution), histogram).

    A class is covered when it receives at least `min_share` of the share it has in the data.
    """
    predicted = np.bincount(sample_probs.argmax(1), minlength=num_classes) / len(sample_probs)
    data = np.bincount(np.asarray(data_labels), minlength=num_classes) / len(data_labels)
    eps = 1e-10
    kl = float(np.sum(predicted * (np.log(predicted + eps) - np.log(data + eps))))
    covered = float(np.mean(predicted >= min_share * data))
    return covered, kl, predicted


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) with the dataset classifier, mean and std over `splits` parts."""
    scores = []
    for part in np.array_split(np.asarray(probs, np.float64), splits):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def memorisation_ratio(
    samples: np.ndarray, train: np.ndarray, held_out: np.ndarray, block: int = 1024, device: str = "auto"
) -> float:
    """Median distance from samples to their nearest training image over that of held-out real images (pixels).

    About 1 for a model that generalises like real data; near 0 for one that returns training images.
    """
    flat = [np.asarray(a, np.float32).reshape(len(a), -1) for a in (samples, train, held_out)]
    sample_nn, _ = _nearest(flat[0], flat[1], block, device)
    held_nn, _ = _nearest(flat[2], flat[1], block, device)
    return float(np.median(sample_nn) / max(np.median(held_nn), 1e-12))


def nearest_training_images(
    samples: np.ndarray, train: np.ndarray, block: int = 1024, device: str = "auto"
) -> np.ndarray:
    """Index of each sample's nearest training image (Euclidean, pixels)."""
    flat_s = np.asarray(samples, np.float32).reshape(len(samples), -1)
    flat_t = np.asarray(train, np.float32).reshape(len(train), -1)
    return _nearest(flat_s, flat_t, block, device)[1]


def conditional_scores(
    sample_features: np.ndarray,
    sample_probs: np.ndarray,
    asked: np.ndarray,
    reference_features: np.ndarray,
    reference_labels: np.ndarray,
    num_classes: int,
) -> tuple[float, list[float]]:
    """A conditional model's (accuracy of the classifier on its samples against the labels they were drawn for,
    Fréchet distance per class between its samples of that class and the real images of that class)."""
    asked = np.asarray(asked)
    accuracy = float((np.asarray(sample_probs).argmax(1) == asked).mean())
    per_class = []
    for label in range(num_classes):
        ours, theirs = sample_features[asked == label], reference_features[np.asarray(reference_labels) == label]
        per_class.append(frechet_distance(ours, theirs) if min(len(ours), len(theirs)) >= 2 else float("nan"))
    return accuracy, per_class


# The headline numbers, in the order the report shows them (then those of conditional models only, of
# semi-supervised models only, and of the learned inverse, assets/inference_assets.py).
METRIC_COLUMNS = [
    "frechet_distance",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "class_coverage",
    "class_kl",
    "inception_score",
    "memorisation_ratio",
    "conditional_accuracy",
    "class_frechet_distance",
    "ssl_test_error",
    "supervised_baseline_error",
    "encoder_probe_accuracy",
    "pixel_probe_accuracy",
    "reconstruction_mse",
]


@dataclass(frozen=True)
class SampleMetrics:
    frechet_distance: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    class_coverage: float
    class_kl: float
    inception_score: float
    inception_score_std: float
    memorisation_ratio: float
    n_samples: int
    n_reference: int
    # conditional models (and labelled real images): accuracy against the asked labels, mean and per-class FD
    conditional_accuracy: float | None = None
    class_frechet_distance: float | None = None
    class_frechet_distances: list[float] | None = None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def evaluate_samples(
    sample_features: np.ndarray,
    sample_probs: np.ndarray,
    samples: np.ndarray,
    reference_features: np.ndarray,
    reference_labels: np.ndarray,
    reference_images: np.ndarray,
    held_out_images: np.ndarray,
    num_classes: int,
    device: str = "auto",
    asked: np.ndarray | None = None,
) -> SampleMetrics:
    """Every metric for one set of samples against one reference set of real (training) images; with `asked` (the
    labels a conditional model's samples were drawn for) also the conditional accuracy and per-class FD."""
    precision, recall = precision_recall(reference_features, sample_features, 3, device=resolve_device(device))
    density, coverage = density_coverage(reference_features, sample_features, 5, device=resolve_device(device))
    kid, kid_std = kernel_distance(sample_features, reference_features)
    covered, kl, _ = class_statistics(sample_probs, reference_labels, num_classes)
    score, score_std = inception_score(sample_probs)
    conditional: dict[str, Any] = {}
    if asked is not None:
        accuracy, per_class = conditional_scores(
            sample_features, sample_probs, asked, reference_features, reference_labels, num_classes
        )
        conditional = {
            "conditional_accuracy": accuracy,
            "class_frechet_distance": float(np.nanmean(per_class)),
            "class_frechet_distances": per_class,
        }
    return SampleMetrics(
        frechet_distance=frechet_distance(sample_features, reference_features),
        kid=kid,
        kid_std=kid_std,
        precision=precision,
        recall=recall,
        density=density,
        coverage=coverage,
        class_coverage=covered,
        class_kl=kl,
        inception_score=score,
        inception_score_std=score_std,
        memorisation_ratio=memorisation_ratio(samples, reference_images, held_out_images, device=device),
        n_samples=len(sample_features),
        n_reference=len(reference_features),
        **conditional,
    )


@dataclass(frozen=True)
class ReferenceSet:
    """The real images every score compares with, in a classifier's feature space."""

    classifier: nn.Module
    features: np.ndarray  # of the first n training images
    labels: np.ndarray
    images: np.ndarray  # those n training images, N x C x H x W in [0, 1]
    held_out: np.ndarray  # the first n validation images, for the memorisation ratio
    num_classes: int


def build_reference_set(
    dataset_path: str | os.PathLike[str], classifier: nn.Module, num_classes: int, n: int
) -> ReferenceSet:
    """The first `n` training images of a dataset file (features, labels, pixels) and `n` held-out images."""
    train = load_split(dataset_path, "train", limit=n)
    return ReferenceSet(
        classifier=classifier,
        features=embed(classifier, train),
        labels=load_split_arrays(dataset_path, "train").labels[:n],
        images=train.numpy(),
        held_out=load_split(dataset_path, "valid", limit=n).numpy(),
        num_classes=num_classes,
    )


def score_against(
    images: np.ndarray, reference: ReferenceSet, device: str = "auto", asked: np.ndarray | None = None
) -> SampleMetrics:
    """Every metric for `images` (N x C x H x W in [0, 1]) against `reference`; `asked`: the labels the images stand
    for (a conditional model's asked labels, or real images' own labels)."""
    tensor = torch.from_numpy(np.asarray(images, np.float32))
    return evaluate_samples(
        embed(reference.classifier, tensor),
        predict(reference.classifier, tensor),
        images,
        reference.features,
        reference.labels,
        reference.images,
        reference.held_out,
        reference.num_classes,
        device=device,
        asked=asked,
    )
