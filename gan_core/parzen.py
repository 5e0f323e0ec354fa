"""Gaussian Parzen-window log-likelihood, exactly the protocol of Goodfellow et al. (2014) (parzen_ll.py).

    log p(x) = logsumexp_i(-||x - s_i||^2 / (2 sigma^2)) - log N - d log(sigma sqrt(2 pi))

Squared distances are computed once per block of points (centred data, one fused float32 matrix product by default,
CUDA when present) and reused for every sigma. Memory is bounded by `block_size` rows of distances whatever the number
of points. `dtype=torch.float64` gives a float64 computation throughout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from gan_core.devices import resolve_device

PAPER_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.logspace(-1, 0, 10))
PAPER_VALID_POINTS = 1000


def _as_matrix(array: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    if tensor.ndim > 2:
        tensor = tensor.flatten(1)
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (rows = flattened images), got shape {tuple(tensor.shape)}"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def iter_squared_distances(
    samples: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    block_size: int = 1024,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first row, `dtype` squared distances of at most `block_size` rows of x to every sample).

    The data are centred on the sample mean (in float64) first: smaller norms mean less cancellation in
    |x|^2 + |s|^2 - 2 x.s, which is then one fused matrix product (addmm) in `dtype`.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    dev = resolve_device(device)
    s64 = _as_matrix(samples, "samples").to(dev, torch.float64)
    points = _as_matrix(x, "x")
    if s64.shape[1] != points.shape[1]:
        raise ValueError(f"samples have {s64.shape[1]} dimensions but x has {points.shape[1]}")
    centre = s64.mean(0, keepdim=True)
    s = (s64 - centre).to(dtype)
    s_norm = (s * s).sum(1)
    for start in range(0, points.shape[0], block_size):
        block = (points[start : start + block_size].to(dev, torch.float64) - centre).to(dtype)
        base = (block * block).sum(1, keepdim=True) + s_norm[None, :]
        yield start, torch.addmm(base, block, s.T, alpha=-2.0).clamp_min_(0.0)


def parzen_log_likelihood_multi(
    samples: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    sigmas: tuple[float, ...] | list[float] | np.ndarray,
    block_size: int = 1024,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Per-point log-likelihoods (nats, float64) of each row of `x`, one column per sigma: shape (len(x), len(sigmas)).

    The distances are computed once for all sigmas; at most `block_size` rows of x are held at a time. The log-sum-exp
    runs in `dtype` (its result is O(1e3) at most, so float32 keeps ~1e-4 nats); constants are added in float64.
    """
    sigma_array = np.asarray(list(sigmas), dtype=np.float64)
    if sigma_array.size == 0 or not np.all(sigma_array > 0):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers, got {sigma_array.tolist()}")
    n, d = _as_matrix(samples, "samples").shape
    constants = math.log(n) + d * np.log(sigma_array * math.sqrt(2 * math.pi))
    out = np.empty((_as_matrix(x, "x").shape[0], sigma_array.size), dtype=np.float64)
    for start, sq_dist in iter_squared_distances(samples, x, block_size, device, dtype):
        for j, sigma in enumerate(sigma_array):
            log_kernel_sum = torch.logsumexp(sq_dist * (-0.5 / sigma**2), dim=1)
            out[start : start + sq_dist.shape[0], j] = log_kernel_sum.cpu().numpy().astype(np.float64) - constants[j]
    return out


def parzen_log_likelihood(
    samples: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    sigma: float,
    block_size: int = 1024,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Per-point log-likelihood (nats, float64) of each row of `x` under a Parzen window on the rows of `samples`."""
    return parzen_log_likelihood_multi(samples, x, [sigma], block_size, device, dtype)[:, 0]


def select_sigma(
    samples: np.ndarray | torch.Tensor,
    valid: np.ndarray | torch.Tensor,
    sigmas: tuple[float, ...] | list[float] | np.ndarray = PAPER_SIGMAS,
    block_size: int = 1024,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, dict[float, float]]:
    """(the sigma with the highest mean validation log-likelihood, {sigma: mean validation log-likelihood})."""
    table = parzen_log_likelihood_multi(samples, valid, sigmas, block_size, device, dtype).mean(0)
    means = {float(s): float(v) for s, v in zip(sigmas, table, strict=True)}
    return max(means, key=means.__getitem__), means


@dataclass(frozen=True)
class ParzenResult:
    """The paper's Parzen protocol outcome: mean test log-likelihood +- standard error and how sigma was chosen."""

    sigma: float
    mean_log_likelihood: float
    standard_error: float
    std: float
    valid_mean_by_sigma: dict[float, float]
    n_samples: int
    n_valid: int
    n_test: int

    def to_dict(self) -> dict:
        result = asdict(self)
        result["valid_mean_by_sigma"] = {str(k): v for k, v in self.valid_mean_by_sigma.items()}
        return result


def search_bandwidth(
    samples: np.ndarray, valid: torch.Tensor, sigmas: list[float], block_size: int, device: str
) -> dict[str, Any]:
    """`select_sigma` over one sample set (N x ...), as stored: the chosen sigma, the validation mean per sigma of
    the grid, the number of validation images and the seconds it took."""
    started = time.perf_counter()
    sigma, means = select_sigma(samples.reshape(len(samples), -1), valid, sigmas, block_size, device)
    return {
        "sigma": sigma,
        "valid_mean_by_sigma": [[s, means[s]] for s in sigmas],
        "n_valid": int(valid.shape[0]),
        "seconds": time.perf_counter() - started,
    }


def score_test_set(
    samples: np.ndarray, test: torch.Tensor, sigma: float, block_size: int, device: str
) -> dict[str, Any]:
    """`parzen_log_likelihood` of the `test` rows under one sample set (N x ...) with the chosen `sigma`, as stored:
    the mean, its standard error and the spread (the paper's Table 1 entry), the counts and the seconds it took."""
    started = time.perf_counter()
    values = parzen_log_likelihood(samples.reshape(len(samples), -1), test, sigma, block_size, device)
    std, sem = standard_error(values)
    return {
        "mean_log_likelihood": float(values.mean()),
        "standard_error": sem,
        "std": std,
        "n_samples": int(len(samples)),
        "n_test": int(len(values)),
        "seconds": time.perf_counter() - started,
    }


def across_seeds(results: list[dict[str, Any]]) -> tuple[float, float]:
    """(mean, error bar) of the seeds' mean log-likelihoods: one seed's own standard error, or the spread (sample
    standard deviation) of several seeds' means."""
    means = np.array([result["mean_log_likelihood"] for result in results])
    return float(means.mean()), results[0]["standard_error"] if len(results) == 1 else float(means.std(ddof=1))


def standard_error(values: np.ndarray) -> tuple[float, float]:
    """(population std, std / sqrt(n)), the paper's error bar."""
    std = float(np.std(values))
    return std, std / math.sqrt(len(values))


def evaluate_parzen(
    samples: np.ndarray | torch.Tensor,
    valid: np.ndarray | torch.Tensor,
    test: np.ndarray | torch.Tensor,
    sigmas: tuple[float, ...] | list[float] | np.ndarray = PAPER_SIGMAS,
    n_valid: int = PAPER_VALID_POINTS,
    block_size: int = 1024,
    device: str | torch.device | None = None,
) -> ParzenResult:
    """The whole paper protocol: sigma chosen on the first `n_valid` validation rows, then scored on all test rows."""
    valid_rows = _as_matrix(valid, "valid")[:n_valid]
    sigma, means = select_sigma(samples, valid_rows, sigmas, block_size, device)
    test_ll = parzen_log_likelihood(samples, test, sigma, block_size, device)
    std, sem = standard_error(test_ll)
    return ParzenResult(
        sigma=sigma,
        mean_log_likelihood=float(test_ll.mean()),
        standard_error=sem,
        std=std,
        valid_mean_by_sigma=means,
        n_samples=int(_as_matrix(samples, "samples").shape[0]),
        n_valid=int(valid_rows.shape[0]),
        n_test=int(test_ll.shape[0]),
    )
