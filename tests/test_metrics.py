"""Metrics on hand-computable cases, and validated on digits with the dataset classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gan_core import metrics
from gan_core.classifier import embed, load_classifier, predict, train_classifier
from gan_core.data import load_split, load_split_arrays


def test_frechet_distance_of_a_shift_is_its_squared_length() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 8))
    shift = np.array([1.0, -2.0, 0.5, 0, 0, 0, 0, 3.0])
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    same, same_std = metrics.kernel_distance(a, b, subsets=20, subset_size=500)
    moved, _ = metrics.kernel_distance(a, b + 1.0, subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3 and moved > 10 * max(same_std, 1e-3)


def test_precision_recall_density_coverage_by_hand() -> None:
    real = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    fake = np.array([[0.5], [10.0]])
    # k = 1: every real ball has radius 1; the fake ball around 0.5 has radius 9.5 (its neighbour is 10)
    precision, recall = metrics.precision_recall(real, fake, k=1)
    assert precision == 0.5 and recall == 1.0
    density, coverage = metrics.density_coverage(real, fake, k=1)
    assert density == pytest.approx(2 / 2)  # 0.5 lies in the balls of 0 and 1: 2 hits / (k=1 * 2 fakes)
    assert coverage == pytest.approx(2 / 5)  # only the balls of 0 and 1 hold a fake


def test_class_statistics_and_inception_score_by_hand() -> None:
    labels = np.repeat(np.arange(10), 10)
    one_class = np.zeros((100, 10))
    one_class[:, 3] = 1.0
    covered, kl, histogram = metrics.class_statistics(one_class, labels, 10)
    assert covered == 0.1 and kl == pytest.approx(math.log(10), abs=1e-6) and histogram[3] == 1.0
    confident = np.eye(10)[labels]
    assert metrics.inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-6)
    assert metrics.inception_score(one_class, splits=1)[0] == pytest.approx(1.0, rel=1e-6)


def test_memorisation_ratio_flags_copies() -> None:
    rng = np.random.default_rng(2)
    train, held_out = rng.random((300, 20)), rng.random((100, 20))
    assert metrics.memorisation_ratio(train[:100], train, held_out) == 0.0
    assert 0.7 < metrics.memorisation_ratio(rng.random((100, 20)), train, held_out) < 1.4


@pytest.fixture(scope="module")
def digits_setup(digits_h5, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("digits_metrics")
    split = {
        name: (load_split(digits_h5, name), load_split_arrays(digits_h5, name).labels)
        for name in ("train", "valid", "test")
    }
    result = train_classifier(
        split["train"][0],
        torch.from_numpy(split["train"][1]),
        split["test"][0],
        torch.from_numpy(split["test"][1]),
        root / "classifier.pt",
        10,
        device="cpu",
    )
    return split, result, load_classifier(result.path, "cpu")


def test_classifier_reaches_its_accuracy_target_on_digits(digits_setup) -> None:
    _, result, _ = digits_setup
    assert result.test_accuracy >= 0.95


def test_test_split_looks_perfect_and_one_class_generator_is_caught(digits_setup) -> None:
    split, _, model = digits_setup
    train_images, train_labels = split["train"]
    test_images = split["test"][0]

    reference = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[:300]

    def score(images: torch.Tensor) -> metrics.SampleMetrics:
        # reference set of the same size as the samples (300), as coverage and recall assume
        return metrics.evaluate_samples(
            embed(model, images),
            predict(model, images),
            images.numpy(),
            embed(model, train_images[reference]),
            train_labels[reference.numpy()],
            train_images[reference].numpy(),
            split["valid"][0].numpy(),
            10,
        )

    real = score(test_images)
    assert real.class_coverage == 1.0 and real.class_kl < 0.05
    assert real.precision > 0.8 and real.recall > 0.8 and real.coverage > 0.8
    assert 0.7 < real.memorisation_ratio < 1.3
    threes = train_images[torch.from_numpy(train_labels == 3)]
    collapsed = score(threes[torch.arange(300) % len(threes)] + 0.01 * torch.rand(300, 1, 8, 8))
    assert collapsed.class_coverage == pytest.approx(0.1)
    assert collapsed.class_kl > 1.5  # about log(10) = 2.3
    assert collapsed.recall < 0.3 and collapsed.coverage < 0.3
    assert collapsed.frechet_distance > 5 * real.frechet_distance
    memoriser = score(train_images[reference])
    assert memoriser.memorisation_ratio < 0.1
