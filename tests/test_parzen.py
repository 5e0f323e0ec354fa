"""The Parzen estimator against direct float64 evaluation, sigma selection, the error bar, bounded blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from gan_core import parzen
from gan_core.data import load_split_arrays


def direct_float64(samples: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """log p(x) from direct differences in float64 (no expansion of the square, no cancellation)."""
    n, d = samples.shape
    sq = cdist(x.astype(np.float64), samples.astype(np.float64), "sqeuclidean")
    return logsumexp(-sq / (2 * sigma**2), axis=1) - math.log(n) - d * math.log(sigma * math.sqrt(2 * math.pi))


@pytest.fixture(scope="module")
def digits(digits_h5) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {
        s: load_split_arrays(digits_h5, s).images.reshape(-1, 64).astype(np.float32) / 255
        for s in ("train", "valid", "test")
    }


@pytest.mark.parametrize("sigma", [0.1, 0.2154, 1.0])
def test_matches_float64_on_random_data(sigma: float) -> None:
    rng = np.random.default_rng(0)
    samples = rng.random((700, 784), dtype=np.float32)
    x = np.clip(samples[:300] + rng.normal(0, 0.05, (300, 784)), 0, 1).astype(np.float32)  # near neighbours
    expected = direct_float64(samples, x, sigma)
    got = parzen.parzen_log_likelihood(samples, x, sigma, block_size=128)
    assert got.dtype == np.float64
    assert np.abs(got - expected).max() < 0.1
    assert abs(got.mean() - expected.mean()) < 0.01
    exact = parzen.parzen_log_likelihood(samples, x, sigma, dtype=torch.float64)
    assert np.abs(exact - expected).max() < 1e-8


def test_matches_float64_on_digits(digits) -> None:
    for sigma in parzen.PAPER_SIGMAS:
        expected = direct_float64(digits["train"], digits["test"], sigma)
        got = parzen.parzen_log_likelihood(torch.from_numpy(digits["train"]), digits["test"], sigma)
        assert np.abs(got - expected).max() < 0.1 and abs(got.mean() - expected.mean()) < 0.01


def test_multi_sigma_equals_one_sigma_at_a_time(digits) -> None:
    table = parzen.parzen_log_likelihood_multi(digits["train"], digits["valid"], parzen.PAPER_SIGMAS)
    for j, sigma in enumerate(parzen.PAPER_SIGMAS):
        np.testing.assert_allclose(table[:, j], parzen.parzen_log_likelihood(digits["train"], digits["valid"], sigma))


def test_sigma_selection_finds_the_analytic_optimum() -> None:
    # One kernel centre at the origin: mean log p(x) = -mean|x|^2 / (2 s^2) - d log(s sqrt(2 pi)),
    # maximised at s^2 = mean|x|^2 / d. Put that value in a grid with neighbours on both sides.
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.3, (2000, 20))
    best = math.sqrt((x**2).sum(1).mean() / 20)
    grid = [best * f for f in (0.5, 0.8, 0.95, 1.0, 1.05, 1.25, 2.0)]
    sigma, means = parzen.select_sigma(np.zeros((1, 20)), x, grid)
    assert sigma == pytest.approx(best)
    analytic = {s: -(x**2).sum(1).mean() / (2 * s**2) - 20 * math.log(s * math.sqrt(2 * math.pi)) for s in grid}
    for s in grid:
        assert means[s] == pytest.approx(analytic[s], abs=1e-4)


def test_same_distribution_prefers_an_inside_sigma_and_the_paper_grid() -> None:
    rng = np.random.default_rng(4)
    samples, valid = rng.normal(0.5, 0.1, (3000, 10)), rng.normal(0.5, 0.1, (500, 10))
    sigma, means = parzen.select_sigma(samples, valid)
    assert list(means) == list(parzen.PAPER_SIGMAS) and len(means) == 10
    assert parzen.PAPER_SIGMAS[0] == pytest.approx(0.1) and parzen.PAPER_SIGMAS[-1] == pytest.approx(1.0)
    assert means[sigma] == max(means.values())


def test_standard_error_is_population_std_over_sqrt_n(digits) -> None:
    result = parzen.evaluate_parzen(digits["train"], digits["valid"], digits["test"], n_valid=100)
    values = direct_float64(digits["train"], digits["test"], result.sigma)
    assert result.n_valid == 100 and result.n_test == 300 and result.n_samples == 1197
    assert result.std == pytest.approx(np.std(values), abs=1e-3)
    assert result.standard_error == pytest.approx(np.std(values) / math.sqrt(300), abs=1e-4)
    assert result.mean_log_likelihood == pytest.approx(values.mean(), abs=1e-3)
    chosen = direct_float64(digits["train"], digits["valid"][:100], result.sigma).mean()
    assert result.valid_mean_by_sigma[result.sigma] == pytest.approx(chosen, abs=1e-3)


def test_blocks_bound_memory_and_do_not_change_results(digits) -> None:
    rows = [block.shape[0] for _, block in parzen.iter_squared_distances(digits["train"], digits["test"], 7)]
    assert max(rows) == 7 and sum(rows) == 300
    for dtype, tolerance in ((torch.float32, 1e-3), (torch.float64, 1e-9)):  # float32 rounding depends on blocking
        small = parzen.parzen_log_likelihood(digits["train"], digits["test"], 0.2, block_size=7, dtype=dtype)
        large = parzen.parzen_log_likelihood(digits["train"], digits["test"], 0.2, block_size=4096, dtype=dtype)
        np.testing.assert_allclose(small, large, rtol=0, atol=tolerance)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigmas": []}, "non-empty list of positive"),
        ({"sigmas": [0.1, -1.0]}, "non-empty list of positive"),
        ({"block_size": 0}, "block_size must be positive"),
    ],
)
def test_bad_settings(kwargs, message) -> None:
    args = {"sigmas": [0.1], "block_size": 16} | kwargs
    with pytest.raises(ValueError, match=message):
        parzen.parzen_log_likelihood_multi(np.zeros((4, 3)), np.zeros((2, 3)), **args)


def test_bad_arrays() -> None:
    with pytest.raises(ValueError, match="samples contains NaN"):
        parzen.parzen_log_likelihood(np.full((4, 3), np.nan), np.zeros((2, 3)), 0.1)
    with pytest.raises(ValueError, match="samples have 3 dimensions but x has 5"):
        parzen.parzen_log_likelihood(np.zeros((4, 3)), np.zeros((2, 5)), 0.1)
