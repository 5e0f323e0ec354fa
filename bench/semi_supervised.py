"""Score the stored semi-supervised runs of a partition, finished or not: each seed's discriminator as a K-way
classifier of the test split (`ssl_test_error`) beside the same network trained on that seed's labelled images alone
(`supervised_baseline_error`), with the epochs and training seconds its checkpoint records; mean ± std over seeds.

    python bench/semi_supervised.py --data-dir /path/to/data --dataset mnist --experiment paper_mlp_ssl

The scores are gan_core.semi_supervised.semi_supervised_scores, what `evaluation_metrics` stores for a finished run;
this reads each run's latest checkpoint, so a run stopped (SIGTERM) before its last epoch is scored where it stands.
"""

from __future__ import annotations

import argparse
import json
import statistics

from gan_core.checkpoint import load_checkpoint
from gan_core.data import load_split, load_split_arrays
from gan_core.layout import ArtifactLayout, checkpoint_file
from gan_core.semi_supervised import semi_supervised_scores
from gan_core.sources import get_dataset_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--experiment", default="paper_mlp_ssl")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    layout = ArtifactLayout(args.data_dir)
    path = layout.dataset_file(args.dataset)
    train = (load_split(path, "train"), load_split_arrays(path, "train").labels)
    test = (load_split(path, "test"), load_split_arrays(path, "test").labels)
    num_classes = get_dataset_spec(args.dataset).num_classes
    rows = []
    for run_dir in sorted(layout.path("models", args.dataset, args.experiment).iterdir()):
        if not checkpoint_file(run_dir).is_file():
            continue
        state = load_checkpoint(checkpoint_file(run_dir), "cpu")
        scores = semi_supervised_scores(checkpoint_file(run_dir), train, test, num_classes, args.device)
        history = state["history"]
        rows.append(
            {
                "seed": state["config"]["seed"],
                "epochs": len(history),
                "of_epochs": state["config"]["epochs"],
                "train_seconds": round(sum(epoch["seconds"] for epoch in history), 1),
                **scores,
            }
        )
    summary = {}
    for name in ("ssl_test_error", "supervised_baseline_error"):
        values = [row[name] for row in rows]
        summary[name] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    print(json.dumps({"dataset": args.dataset, "experiment": args.experiment, "runs": rows, **summary}, indent=1))


if __name__ == "__main__":
    main()
