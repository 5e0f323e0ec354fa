"""Model assets: the trained GAN checkpoints and the samples drawn from them, per dataset x model partition.

Results are stored under a hash of (training settings, dataset content hash, code version): re-running with the same
inputs finds the finished checkpoint and returns it marked `cached`; new settings train into a new directory, so an old
model is never returned for new settings. Several seeds are trained by listing them in `seeds`.
"""

import dataclasses
import time

import dagster as dg

from assets.common import dataset_and_model
from assets.configs import GanTrainingConfig, SamplingConfig, validate_run_config
from assets.data_assets import preprocessed_dataset
from gan_core.data import load_split, read_dataset_info
from gan_core.plots import grid_png, line_png, png_markdown
from gan_core.sample import generate, load_generator, read_samples_h5, samples_hash, write_samples_h5
from gan_core.storage import hash_json, write_json_atomic
from gan_core.train import (
    RuntimeOptions,
    checkpoint_weights_hash,
    cuda_graph_supported,
    is_finished,
    load_checkpoint,
    train_gan,
)
from pipelines.partitions import dataset_model_partitions
from pipelines.resources import StorageResource

TRAIN_CODE_VERSION = "2"  # 2: output-bias clip 1e-7 as pylearn2; bf16 autocast also on the CPU
SAMPLE_CODE_VERSION = "1"
MANIFEST = "latest.json"


@dg.asset(
    partitions_def=dataset_model_partitions,
    deps=[preprocessed_dataset],
    code_version=TRAIN_CODE_VERSION,
    pool="gpu",
    group_name="model",
    kinds={"pytorch"},
    description="Trained GAN checkpoints (one per seed) for a dataset x model partition.",
)
def gan_model(
    context: dg.AssetExecutionContext, config: GanTrainingConfig, storage: StorageResource
) -> dg.MaterializeResult:
    validate_run_config(context)
    dataset, model = dataset_and_model(context)
    train_configs = config.train_configs(model)
    dataset_path = storage.dataset_file(dataset)
    info = read_dataset_info(dataset_path)
    train_images = load_split(dataset_path, "train")
    options = RuntimeOptions(device=config.device, compile=config.compile, checkpoint_every=config.checkpoint_every)
    graph_options = dataclasses.replace(options, cuda_graph=config.cuda_graph and not config.compile)
    runs, results = [], []
    for train_config in train_configs:
        identity = hash_json({"train": train_config.to_dict(), "data": info.content_hash, "code": TRAIN_CODE_VERSION})
        run_dir = storage.path("models", dataset, model, identity)
        cached = is_finished(run_dir / "checkpoint.pt", train_config)
        context.log.info(f"seed {train_config.seed}: {'cached result in' if cached else 'training into'} {run_dir}")
        run_options = graph_options if cuda_graph_supported(train_config) else options
        result = train_gan(train_config, train_images, run_dir, run_options, log=context.log.info)
        results.append(result)
        runs.append(
            {
                "seed": train_config.seed,
                "identity": identity,
                "checkpoint": str(result.checkpoint_path),
                "weights_hash": checkpoint_weights_hash(result.checkpoint_path),
                "cached": cached,
                "config": train_config.to_dict(),
            }
        )
    write_json_atomic(
        storage.model_dir(dataset, model) / MANIFEST,
        {"dataset": dataset, "model": model, "dataset_hash": info.content_hash, "runs": runs},
    )
    first = results[0]
    history = first.history
    loss_png = line_png(
        [r["epoch"] for r in history],
        {"D loss": [r["d_loss"] for r in history], "G loss": [r["g_loss"] for r in history]},
        "epoch",
        "loss",
        title=f"{dataset} / {model}",
    )
    preview = generate(load_generator(first.checkpoint_path, "cpu"), 100, seed=0)
    return dg.MaterializeResult(
        metadata={
            "seeds": dg.MetadataValue.json([run["seed"] for run in runs]),
            "checkpoints": dg.MetadataValue.json([run["checkpoint"] for run in runs]),
            "cached": all(run["cached"] for run in runs),
            "epochs": first.epochs,
            "steps": first.steps,
            "wall_seconds": round(first.wall_seconds, 2),
            "images_per_second": round(first.images_per_second, 1),
            "device": first.device,
            **{
                f"final_{key}": round(first.final.get(key, float("nan")), 5)
                for key in ("d_loss", "g_loss", "d_real", "d_fake")
            },
            "config": dg.MetadataValue.json(runs[0]["config"]),
            "loss_curve": dg.MetadataValue.md(png_markdown(loss_png, "loss curve")),
            "sample_grid": dg.MetadataValue.md(png_markdown(grid_png(preview), "samples")),
        },
        data_version=dg.DataVersion(hash_json([run["weights_hash"] for run in runs])),
    )


def read_manifest(storage: StorageResource, kind: str, dataset: str, model: str) -> dict:
    """The latest manifest written by `gan_model` (kind="models") or `generated_samples` (kind="samples")."""
    import json

    path = storage.path(kind, dataset, model, MANIFEST)
    if not path.is_file():
        upstream = "gan_model" if kind == "models" else "generated_samples"
        raise FileNotFoundError(f"{path} does not exist: materialise {upstream} for {dataset}|{model} first")
    return json.loads(path.read_text())


@dg.asset(
    partitions_def=dataset_model_partitions,
    deps=[gan_model],
    code_version=SAMPLE_CODE_VERSION,
    automation_condition=dg.AutomationCondition.eager(),
    pool="gpu",
    group_name="model",
    kinds={"hdf5"},
    description="Samples from each trained seed's generator (10,000 by default), in HDF5 with the noise seed.",
)
def generated_samples(
    context: dg.AssetExecutionContext, config: SamplingConfig, storage: StorageResource
) -> dg.MaterializeResult:
    validate_run_config(context)
    dataset, model = dataset_and_model(context)
    models = read_manifest(storage, "models", dataset, model)
    entries, first_samples, cached_all = [], None, True
    started = time.perf_counter()
    for run in models["runs"]:
        path = storage.path("samples", dataset, model, f"{run['identity']}_n{config.count}_s{config.sample_seed}.h5")
        cached = False
        if path.is_file():
            samples, attrs = read_samples_h5(path)
            cached = attrs["provenance"].get("weights_hash") == run["weights_hash"]
        if not cached:
            loaded = load_generator(run["checkpoint"], config.device)
            samples = generate(loaded, config.count, config.sample_seed, config.batch_size)
            write_samples_h5(
                path,
                samples,
                config.sample_seed,
                {
                    "checkpoint": run["checkpoint"],
                    "weights_hash": run["weights_hash"],
                    "train_seed": run["seed"],
                    "dataset": dataset,
                    "model": model,
                    "count": config.count,
                },
            )
        cached_all &= cached
        digest = samples_hash(samples)
        entries.append({"seed": run["seed"], "path": str(path), "content_hash": digest, "cached": cached})
        first_samples = samples if first_samples is None else first_samples
        context.log.info(f"seed {run['seed']}: {'cached' if cached else 'wrote'} {len(samples)} samples at {path}")
    write_json_atomic(
        storage.samples_dir(dataset, model) / MANIFEST,
        {"dataset": dataset, "model": model, "count": config.count, "sample_seed": config.sample_seed, "runs": entries},
    )
    return dg.MaterializeResult(
        metadata={
            "paths": dg.MetadataValue.json([entry["path"] for entry in entries]),
            "count": config.count,
            "sample_seed": config.sample_seed,
            "cached": cached_all,
            "seconds": round(time.perf_counter() - started, 2),
            "sample_grid": dg.MetadataValue.md(png_markdown(grid_png(first_samples[:100]), "samples")),
        },
        data_version=dg.DataVersion(hash_json([entry["content_hash"] for entry in entries])),
    )


__all__ = ["gan_model", "generated_samples", "load_checkpoint", "read_manifest"]
