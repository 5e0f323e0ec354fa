"""Two players against k generators and against k discriminators, at the same number of generator updates, over
several seeds, on the mode-collapse measures (class coverage, class KL, recall) and Fréchet distance.

    python bench/players.py --dataset digits --epochs 100 --seeds 0 1 2 --k 3

Every set-up trains the dataset's default configuration (digits: the paper's MLP and SGD, batch 32, generator average)
with the same batch size and epochs, so the generator takes the same number of updates; only the player counts differ.
Samples (as many as training images) are scored against the training images in the feature space of a classifier
trained here on the dataset. Prints a table of mean ± std over seeds and writes bench/results/players_<dataset>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import ensure_dataset, write_json

from gan_core.classifier import train_classifier
from gan_core.config import RuntimeOptions, default_train_config
from gan_core.data import load_split, load_split_arrays
from gan_core.metrics import build_reference_set, score_against
from gan_core.sample import generate, load_generator
from gan_core.sources import get_dataset_spec
from gan_core.train import train_gan

MEASURES = ("class_coverage", "class_kl", "recall", "precision", "frechet_distance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--source", default="")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--model", default="paper_mlp")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=3, help="players of the kind that is multiplied")
    args = parser.parse_args()

    path = ensure_dataset(args.dataset, args.source, args.data_dir)
    spec = get_dataset_spec(args.dataset)
    train, labels = load_split(path, "train"), torch.from_numpy(load_split_arrays(path, "train").labels)
    test = load_split_arrays(path, "test")
    scratch = Path(tempfile.mkdtemp(prefix="players-"))
    classifier = train_classifier(
        train,
        labels,
        load_split(path, "test"),
        torch.from_numpy(test.labels),
        scratch / "classifier.pt",
        spec.num_classes,
        seed=0,
        device="cpu",
    )
    from gan_core.classifier import load_classifier

    reference = build_reference_set(
        path, load_classifier(scratch / "classifier.pt", "cpu"), spec.num_classes, len(train)
    )
    setups = {
        "two players": {},
        f"{args.k} generators": {"n_generators": args.k},
        f"{args.k} discriminators": {"n_discriminators": args.k},
    }
    rows: dict[str, list[dict]] = {name: [] for name in setups}
    for name, players in setups.items():
        for seed in args.seeds:
            config = default_train_config(args.model, dataset=args.dataset, epochs=args.epochs, seed=seed, **players)
            started = time.perf_counter()
            result = train_gan(config, train, scratch / f"{name}-{seed}", RuntimeOptions(progress=False))
            samples = generate(load_generator(result.checkpoint_path, "cpu"), len(train), seed=0)
            scores = score_against(samples, reference, "cpu").to_dict()
            rows[name].append({"seed": seed, "steps": result.steps, "seconds": time.perf_counter() - started, **scores})
            print(f"{name:18} seed {seed}: " + " ".join(f"{m} {scores[m]:.3f}" for m in MEASURES), flush=True)

    print(
        f"\n{args.dataset}, {args.model}, {args.epochs} epochs ({rows['two players'][0]['steps']} generator updates), "
        f"seeds {args.seeds}; mean ± std over seeds (classifier test accuracy {classifier.test_accuracy:.3f})"
    )
    print(f"| set-up | {' | '.join(MEASURES)} | seconds |\n|---|{'---|' * (len(MEASURES) + 1)}")
    summary = {}
    for name, runs in rows.items():
        cells = []
        for measure in MEASURES:
            values = np.array([run[measure] for run in runs])
            cells.append(f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}")
        seconds = np.mean([run["seconds"] for run in runs])
        print(f"| {name} | {' | '.join(cells)} | {seconds:.0f} |")
        summary[name] = {"runs": runs, "mean_seconds": seconds}
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    write_json(f"bench/results/players_{args.dataset}.json", {"args": vars(args), "setups": summary})


if __name__ == "__main__":
    main()
