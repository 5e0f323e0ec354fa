"""Score any training checkpoint the way the pipeline does: the paper's Parzen protocol and the offline metrics.

    python bench/evaluate_checkpoint.py runs/mnist_paper/checkpoint.pt --data-dir data --dataset mnist

Needs the dataset file and its feature classifier in the data directory (materialise `preprocessed_dataset` and
`feature_classifier` for the dataset first). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gan_core.classifier import load_classifier
from gan_core.data import load_split
from gan_core.metrics import build_reference_set, score_against
from gan_core.parzen import evaluate_parzen
from gan_core.sample import generate, load_generator
from gan_core.sources import get_dataset_spec
from gan_core.train import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = Path(args.data_dir)
    h5 = data / "datasets" / f"{args.dataset}.h5"
    state = load_checkpoint(args.checkpoint)
    started = time.perf_counter()
    samples = generate(load_generator(args.checkpoint, "auto"), args.count, seed=args.seed)
    flat = samples.reshape(len(samples), -1)
    parzen = evaluate_parzen(flat, load_split(h5, "valid").flatten(1), load_split(h5, "test").flatten(1))
    classifier = load_classifier(data / "models" / args.dataset / "feature_classifier.pt")
    n = min(10_000, len(samples))
    reference = build_reference_set(h5, classifier, get_dataset_spec(args.dataset).num_classes, n)
    scores = score_against(samples[:n], reference)
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "epoch": int(state["epoch"]),
                "train_seconds": round(state["elapsed_seconds"]),
                "device": state["device"],
                "parzen": parzen.to_dict(),
                "metrics": scores.to_dict(),
                "evaluation_seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
