"""The paper's Table 1 row from trained checkpoints: each seed's best checkpoint by the validation monitor
(gan_core.monitor) and its last one, both scored under the exact protocol (10,000 samples, sigma chosen on the
first 1,000 validation images, the test images' mean log-likelihood), and the row over seeds."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_core.checkpoint import load_checkpoint
from gan_core.layout import best_checkpoint_file, checkpoint_file
from gan_core.monitor import MONITOR_KEY
from gan_core.parzen import PAPER_SIGMAS, PAPER_VALID_POINTS, evaluate_parzen
from gan_core.sample import generate, load_generator

PROTOCOL_SAMPLES = 10_000
PROTOCOL_SAMPLE_SEED = 1234  # the noise of the scored samples (bench/reproduce_mnist.py's, so figures compare)
CHECKPOINTS = ("best", "last")  # which checkpoint of a seed a score is of


def protocol_score(
    checkpoint_path: str | os.PathLike[str],
    valid: torch.Tensor,
    test: torch.Tensor,
    samples: int = PROTOCOL_SAMPLES,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """The exact protocol for one checkpoint: its epoch, wall seconds of training, monitor estimate (None when not
    monitored), the chosen sigma and the test images' mean log-likelihood +- standard error."""
    saved = load_checkpoint(checkpoint_path)
    loaded = load_generator(checkpoint_path, device or "auto")
    drawn = generate(loaded, samples, seed=PROTOCOL_SAMPLE_SEED)
    result = evaluate_parzen(
        drawn.reshape(len(drawn), -1),
        valid.flatten(1),
        test.flatten(1),
        PAPER_SIGMAS,
        PAPER_VALID_POINTS,
        device=device,
    )
    return {
        "epoch": int(saved["epoch"]),
        "wall_seconds": float(saved["elapsed_seconds"]),
        "monitor_ll": saved["history"][-1].get(MONITOR_KEY) if saved["history"] else None,
        "sigma": result.sigma,
        "mean_log_likelihood": result.mean_log_likelihood,
        "standard_error": result.standard_error,
        "n_samples": result.n_samples,
        "n_test": result.n_test,
    }


def reproduction_rows(scores: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, model, checkpoint) over its seeds: mean +- std of the seeds' test log-likelihoods (a
    single seed: its standard error; `spread` says which), the epochs (mean), and the longest training wall time.
    `scores` items: {dataset, model, seed, checkpoint (CHECKPOINTS), epoch, wall_seconds, mean_log_likelihood,
    standard_error}."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for score in scores:
        groups.setdefault((score["dataset"], score["model"], score["checkpoint"]), []).append(score)
    rows = []
    for (dataset, model, checkpoint), group in sorted(groups.items(), key=lambda item: (item[0][:2], item[0][2])):
        means = np.array([s["mean_log_likelihood"] for s in group])
        error = float(means.std(ddof=1)) if len(means) > 1 else float(group[0]["standard_error"])
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "checkpoint": checkpoint,
                "seeds": len(group),
                "mean": float(means.mean()),
                "error": error,
                "spread": "std over seeds" if len(means) > 1 else "standard error",
                "epochs": float(np.mean([s["epoch"] for s in group])),
                "wall_seconds": max(float(s["wall_seconds"]) for s in group),
            }
        )
    return rows


def best_and_last(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """{checkpoint kind: path} of a run directory: its best checkpoint (when monitored) and its last."""
    found = {"best": best_checkpoint_file(run_dir), "last": checkpoint_file(run_dir)}
    return {kind: path for kind, path in found.items() if path.is_file()}
