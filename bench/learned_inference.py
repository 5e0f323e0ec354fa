"""Which inverse inverts better: the paper's encoder fitted to (G(z), z) after training, or BiGAN's, learned with G.

    python bench/learned_inference.py --dataset digits --data-dir runs/inference
    python bench/learned_inference.py --dataset mnist --source ../shared/data/mnist --epochs 10 --steps 5000

Trains each model through the pipeline's own training job (cached: a second call trains nothing), then its
`inference_job` (latent_encoder), in one Dagster instance under `--data-dir`, and prints one row per model: the
linear probe's test accuracy on E(x) beside raw pixels', the reconstruction MSE of G(E(x)) and E(G(z))'s latent MSE,
with the seconds each part took. The reconstructions figure of each is under <data-dir>/figures/<dataset>/<model>/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import dagster as dg

from assets.partitions import dataset_experiment_key, register_experiments
from assets.resources import DatasetSourcesResource, StorageResource
from gan_core.models import MODELS
from pipelines.definitions import build_definitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--source", default="", help="local directory or mirror of the dataset's files (MNIST)")
    parser.add_argument("--data-dir", default="runs/inference")
    parser.add_argument("--models", nargs="+", default=["paper_mlp", "paper_mlp_bigan"])
    parser.add_argument("--epochs", type=int, default=0, help="training epochs (0: each model's default)")
    parser.add_argument("--steps", type=int, default=1000, help="the fitted encoder's Adam steps")
    args = parser.parse_args()

    data_dir = Path(args.data_dir).resolve()
    storage = StorageResource(root_dir=str(data_dir))
    sources = DatasetSourcesResource(sources={args.dataset: args.source} if args.source else {})
    defs = build_definitions(storage=storage, sources=sources)
    home = data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register_experiments(instance, MODELS)
        dataset_run = defs.resolve_job_def("dataset_job").execute_in_process(
            partition_key=args.dataset,
            instance=instance,
            asset_selection=[dg.AssetKey("raw_dataset"), dg.AssetKey("preprocessed_dataset")],
        )
        assert dataset_run.success
        rows = []
        for model in args.models:
            key = dataset_experiment_key(args.dataset, model)
            train_config = {"epochs": args.epochs} if args.epochs else {}
            started = time.perf_counter()
            trained = defs.resolve_job_def("training_job").execute_in_process(
                partition_key=key,
                instance=instance,
                asset_selection=[dg.AssetKey("gan_model")],
                run_config={"ops": {"gan_model": {"config": train_config}}},
            )
            assert trained.success, model
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            inferred = defs.resolve_job_def("inference_job").execute_in_process(
                partition_key=key,
                instance=instance,
                run_config={"ops": {"latent_encoder": {"config": {"steps": args.steps}}}},
            )
            assert inferred.success, model
            for record in storage.layout.read_partition_index("inference", args.dataset, model)["runs"]:
                rows.append(
                    {
                        "model": model,
                        "seed": record["seed"],
                        "inverse": record["inverse"],
                        "encoder_probe_accuracy": round(record["encoder_probe_accuracy"], 4),
                        "pixel_probe_accuracy": round(record["pixel_probe_accuracy"], 4),
                        "reconstruction_mse": round(record["reconstruction_mse"], 4),
                        "latent_mse": round(record["latent_mse"], 4),
                        "train_seconds": round(train_seconds, 1),
                        "inference_seconds": round(time.perf_counter() - started, 1),
                        "cached": record["cached"],
                    }
                )
    print(json.dumps({"dataset": args.dataset, "cpu": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
