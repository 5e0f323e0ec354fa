"""Parzen protocol speed and accuracy: gan_core.parzen next to scikit-learn's KernelDensity, in one run.

    python bench/parzen.py --mnist-source ../shared/data/mnist [--samples-from CHECKPOINT] [--quick]

Both run the paper's protocol on MNIST-sized data: 10,000 samples (784-d), sigma chosen from logspace(-1, 0, 10) on
1,000 validation images, then all 10,000 test images scored. A float64 reference (scipy cdist: direct differences,
no cancellation; scipy logsumexp) gives each method's largest per-point and mean deviation.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import ensure_mnist, write_json
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from gan_core.data import load_split
from gan_core.parzen import PAPER_SIGMAS, evaluate_parzen


def reference_log_likelihood(samples: np.ndarray, x: np.ndarray, sigma: float, block: int = 500) -> np.ndarray:
    out = np.empty(len(x))
    n, d = samples.shape
    for start in range(0, len(x), block):
        sq = cdist(x[start : start + block], samples, "sqeuclidean")
        out[start : start + block] = (
            logsumexp(-sq / (2 * sigma**2), axis=1) - np.log(n) - d * np.log(sigma * np.sqrt(2 * np.pi))
        )
    return out


def sklearn_protocol(samples: np.ndarray, valid: np.ndarray, test: np.ndarray) -> tuple[float, np.ndarray]:
    from sklearn.neighbors import KernelDensity

    means = []
    for sigma in PAPER_SIGMAS:
        means.append(KernelDensity(kernel="gaussian", bandwidth=sigma).fit(samples).score_samples(valid).mean())
    best = PAPER_SIGMAS[int(np.argmax(means))]
    return best, KernelDensity(kernel="gaussian", bandwidth=best).fit(samples).score_samples(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-source", default="")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--samples-from", default="", help="a training checkpoint; default: real training images")
    parser.add_argument("--quick", action="store_true", help="1,000 test points instead of 10,000 (smoke test)")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument(
        "--devices", default="auto", help="comma-separated torch devices to time gan_core on (auto: cuda if present)"
    )
    parser.add_argument(
        "--reference-points", type=int, default=0, help="score deviations on the first N test points only (0 = all)"
    )
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args()

    h5 = ensure_mnist(args.mnist_source, Path(args.data_dir))
    if args.samples_from:
        from gan_core.sample import generate, load_generator

        samples = generate(load_generator(args.samples_from, "cpu"), 10_000, seed=0).reshape(10_000, -1)
        samples_desc = f"10,000 samples from {args.samples_from}"
    else:
        samples = load_split(h5, "train", limit=10_000).flatten(1).numpy()
        samples_desc = "training images 0..9,999 standing in for generated samples"
    valid = load_split(h5, "valid", limit=1000).flatten(1).numpy().astype(np.float64)
    test = load_split(h5, "test", limit=1000 if args.quick else None).flatten(1).numpy().astype(np.float64)
    samples = samples.astype(np.float64)
    devices = ["cuda" if torch.cuda.is_available() else "cpu"] if args.devices == "auto" else args.devices.split(",")
    device = devices[0]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(
        f"{samples_desc}; valid {valid.shape}, test {test.shape}; devices {devices} ({gpu}); torch threads "
        f"{torch.get_num_threads()}; {platform.processor() or platform.machine()}"
    )

    figures: dict = {"device": device, "devices": devices, "gpu": gpu, "test_points": len(test)}
    from gan_core import parzen

    labels = []
    for dev in devices:
        evaluate_parzen(samples[:500], valid[:50], test[:50], device=dev)  # warm-up (thread pools, CUDA context)
        for repeat in range(2):  # the faster of two timed repeats per method (first-touch allocation costs)
            for dtype in (torch.float32, torch.float64):
                label = f"gan_core {dev} {str(dtype).removeprefix('torch.')}"
                if label not in labels:
                    labels.append(label)
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
                sigma, _ = parzen.select_sigma(samples, valid, PAPER_SIGMAS, device=dev, dtype=dtype)
                ours = parzen.parzen_log_likelihood(samples, test, sigma, device=dev, dtype=dtype)
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
                if repeat == 0 or seconds < figures[label]["seconds"]:
                    figures[label] = {"seconds": seconds, "sigma": sigma, "values": ours}
                print(f"{label} (repeat {repeat + 1}): {seconds:.2f} s, sigma {sigma:.4f}, mean {ours.mean():.3f}")

    if not args.skip_sklearn:
        started = time.perf_counter()
        sk_sigma, sk_values = sklearn_protocol(samples, valid, test)
        figures["scikit-learn KernelDensity"] = {
            "seconds": time.perf_counter() - started,
            "sigma": sk_sigma,
            "values": sk_values,
        }
        print(
            f"scikit-learn: {figures['scikit-learn KernelDensity']['seconds']:.1f} s, sigma {sk_sigma:.4f}, "
            f"mean {sk_values.mean():.3f}"
        )

    started = time.perf_counter()
    references = {}
    checked = len(test) if args.reference_points <= 0 else min(args.reference_points, len(test))
    print(
        f"\ndeviations against the float64 cdist reference on the first {checked} test points\n"
        "method                     | seconds | speed-up vs sklearn | vs slowest gan_core | sigma  | mean LL   "
        "| max |point dev| | mean dev"
    )
    sk_seconds = figures.get("scikit-learn KernelDensity", {}).get("seconds")
    summary = {}
    slowest = max(figures[label]["seconds"] for label in labels)
    for label in [*labels, "scikit-learn KernelDensity"]:
        if label not in figures:
            continue
        entry = figures[label]
        if entry["sigma"] not in references:
            references[entry["sigma"]] = reference_log_likelihood(samples, test[:checked], entry["sigma"])
        ref = references[entry["sigma"]]
        point_dev = float(np.abs(entry["values"][:checked] - ref).max())
        mean_dev = float(abs(entry["values"][:checked].mean() - ref.mean()))
        speedup = sk_seconds / entry["seconds"] if sk_seconds else float("nan")
        summary[label] = {
            "seconds": entry["seconds"],
            "speedup_vs_sklearn": speedup,
            "speedup_vs_slowest_gan_core": slowest / entry["seconds"],
            "sigma": entry["sigma"],
            "mean_log_likelihood": float(entry["values"].mean()),
            "max_point_deviation": point_dev,
            "mean_deviation": mean_dev,
        }
        print(
            f"{label:26} | {entry['seconds']:7.2f} | {speedup:19.1f} | {slowest / entry['seconds']:19.1f} | "
            f"{entry['sigma']:.4f} | "
            f"{entry['values'].mean():9.3f} | {point_dev:17.2e} | {mean_dev:.2e}"
        )
    print(f"(float64 cdist reference took {time.perf_counter() - started:.1f} s)")
    if args.json:
        write_json(
            args.json,
            {
                "devices": devices,
                "gpu": gpu,
                "test_points": len(test),
                "reference_points": checked,
                "methods": summary,
            },
        )


if __name__ == "__main__":
    main()
