"""Score any training checkpoint the way the pipeline does: the paper's Parzen protocol and the offline metrics.

    python bench/evaluate_checkpoint.py runs/mnist_paper/checkpoint.pt --data-dir data --dataset mnist

Needs the dataset file and its feature classifier in the data directory (materialise `preprocessed_dataset` and
`feature_classifier` for the dataset first; `--parzen-only` needs only the dataset). Prints one JSON object.
`--sigma-grid 0.12,0.22,21` searches σ over 21 log-spaced values instead of the paper's `logspace(-1, 0, 10)`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gan_core.checkpoint import load_checkpoint
from gan_core.classifier import load_classifier
from gan_core.data import load_split
from gan_core.layout import ArtifactLayout
from gan_core.metrics import build_reference_set, score_against
from gan_core.parzen import PAPER_SIGMAS, evaluate_parzen
from gan_core.sample import generate, load_generator
from gan_core.sources import get_dataset_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the samples")
    parser.add_argument("--sigma-grid", default="", help="START,STOP,NUM: log-spaced σ grid (default: the paper's)")
    parser.add_argument("--parzen-only", action="store_true", help="skip the classifier-based metrics")
    args = parser.parse_args()
    sigmas = PAPER_SIGMAS
    if args.sigma_grid:
        try:
            start, stop, num = args.sigma_grid.split(",")
            sigmas = tuple(np.logspace(np.log10(float(start)), np.log10(float(stop)), int(num)))
        except ValueError:
            parser.error(f"--sigma-grid expects START,STOP,NUM (e.g. 0.12,0.22,21), got {args.sigma_grid!r}")

    data = Path(args.data_dir)
    h5 = ArtifactLayout(data).dataset_file(args.dataset)
    state = load_checkpoint(args.checkpoint)
    started = time.perf_counter()
    samples = generate(load_generator(args.checkpoint, "auto"), args.count, seed=args.seed)
    flat = samples.reshape(len(samples), -1)
    parzen = evaluate_parzen(flat, load_split(h5, "valid").flatten(1), load_split(h5, "test").flatten(1), sigmas)
    metrics = None
    if not args.parzen_only:
        classifier = load_classifier(data / "models" / args.dataset / "feature_classifier.pt")
        n = min(10_000, len(samples))
        reference = build_reference_set(h5, classifier, get_dataset_spec(args.dataset).num_classes, n)
        metrics = score_against(samples[:n], reference).to_dict()
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "epoch": int(state["epoch"]),
                "train_seconds": round(state["elapsed_seconds"]),
                "device": state["device"],
                "parzen": parzen.to_dict(),
                "metrics": metrics,
                "evaluation_seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
