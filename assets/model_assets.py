"""Model assets: the trained GAN checkpoints and the samples drawn from them, per dataset x model partition.

Each seed's result is stored under a hash of everything it depends on (training settings, dataset content hash, code
version; for samples the weights, count and noise seed): re-running with the same inputs finds the stored record and
returns it marked `cached`; new settings train into a new directory, so an old model is never returned for new
settings. Several seeds are trained by listing them in `seeds`.
"""

import time

import dagster as dg

from assets.common import (
    checked_partition,
    compute_or_load_each,
    partition_asset,
    progress_bars,
    run_holder,
    store_figure,
)
from assets.configs import GanTrainingConfig, SamplingConfig
from assets.data_assets import preprocessed_dataset
from assets.resources import StorageResource
from assets.training import TRAIN_CODE_VERSION, train_partition
from gan_core.checkpoint import load_checkpoint
from gan_core.data import read_dataset_info
from gan_core.layout import ArtifactLayout
from gan_core.models import get_model_spec
from gan_core.plots import grid_png, line_png, png_markdown
from gan_core.sample import (
    generate,
    load_generator,
    read_samples_h5,
    samples_per_class,
    write_checkpoint_samples,
)
from gan_core.storage import hash_json
from gan_core.updates import STEP_STATISTICS

SAMPLE_CODE_VERSION = "1"
CODE = {"code": SAMPLE_CODE_VERSION}  # the samples' key part naming their code version


@partition_asset(
    deps=[preprocessed_dataset],
    code_version=TRAIN_CODE_VERSION,
    group_name="model",
    kinds={"pytorch"},
    automated=False,
)
def gan_model(
    context: dg.AssetExecutionContext, config: GanTrainingConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Trained GAN checkpoints (one per seed) for a dataset x experiment partition; the experiment's definition is
    stored with them and shown here."""
    dataset, experiment, layout = checked_partition(context, storage)
    registry = storage.experiments
    definition = registry.get(experiment)
    mates = [point for point in registry.sweep_points(definition.sweep) if point.name != experiment]
    info = read_dataset_info(layout.dataset_file(dataset))
    options = config.runtime_options(holder=run_holder(context), progress=progress_bars())
    runs = train_partition(
        context, config, options, layout, info, dataset, definition, mates if definition.sweep else []
    )
    layout.write_partition_index(
        "models",
        dataset,
        experiment,
        {
            "dataset": dataset,
            "model": definition.model,
            "experiment": definition.to_dict(),
            "dataset_hash": info.content_hash,
            "runs": runs,
        },
    )
    first = runs[0]
    histories = {run["seed"]: load_checkpoint(run["checkpoint"])["history"] for run in runs}
    history = histories[first["seed"]]
    curves = {}
    for seed, seed_history in histories.items():
        curves[f"D loss, seed {seed}"] = [r["d_loss"] for r in seed_history]
        curves[f"G loss, seed {seed}"] = [r["g_loss"] for r in seed_history]
    loss_png = line_png([r["epoch"] for r in history], curves, "epoch", "loss", title=f"{dataset} / {experiment}")
    store_figure(layout, dataset, experiment, "loss_curves", loss_png)
    preview = generate(load_generator(first["checkpoint"], "cpu"), 100, seed=0)
    return dg.MaterializeResult(
        metadata={
            "seeds": dg.MetadataValue.json([run["seed"] for run in runs]),
            "checkpoints": dg.MetadataValue.json([run["checkpoint"] for run in runs]),
            "cached": all(run["cached"] for run in runs),
            "epochs": first["epochs"],
            "steps": first["steps"],
            "wall_seconds": round(first["wall_seconds"], 2),
            "images_per_second": round(first["images_per_second"], 1),
            "device": first["device"],
            **{f"final_{key}": round(history[-1].get(key, float("nan")), 5) for key in STEP_STATISTICS},
            "config": dg.MetadataValue.json(first["config"]),
            "experiment": dg.MetadataValue.json(definition.to_dict()),
            "experiment_model": definition.model,
            "experiment_settings": dg.MetadataValue.json(dict(definition.settings)),
            "loss_curve": dg.MetadataValue.md(png_markdown(loss_png, "loss curve")),
            "sample_grid": dg.MetadataValue.md(png_markdown(grid_png(preview), "samples")),
        },
        data_version=dg.DataVersion(hash_json([run["weights_hash"] for run in runs])),
    )


@partition_asset(
    deps=[gan_model],
    code_version=SAMPLE_CODE_VERSION,
    group_name="model",
    kinds={"hdf5"},
)
def generated_samples(
    context: dg.AssetExecutionContext, config: SamplingConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Samples from each trained seed's generator (10,000 by default), in HDF5 with the noise seed."""
    dataset, experiment, layout = checked_partition(context, storage)
    started = time.perf_counter()

    def draw(run: dict) -> dict:
        context.log.info(f"seed {run['seed']}: drawing {config.count} samples")
        path = layout.samples_file(dataset, experiment, run["identity"], config.count, config.sample_seed)
        provenance = {"checkpoint": run["checkpoint"], "weights_hash": run["weights_hash"], "train_seed": run["seed"]}
        provenance.update(dataset=dataset, model=experiment, count=config.count)
        digest = write_checkpoint_samples(
            path, run["checkpoint"], config.count, config.sample_seed, provenance, config.batch_size, config.device
        )
        return {"seed": run["seed"], "path": str(path), "content_hash": digest, "files": [str(path)]}

    entries = compute_or_load_each(
        context,
        layout.trained_runs(dataset, experiment),
        lambda run, key: layout.samples_record(dataset, experiment, run["identity"], config.count, config.sample_seed),
        lambda run: {"weights": run["weights_hash"], "count": config.count, "seed": config.sample_seed, **CODE},
        draw,
        lambda entry: f"{config.count} samples at {entry['path']}",
    )
    layout.write_partition_index(
        "samples",
        dataset,
        experiment,
        {
            "dataset": dataset,
            "model": experiment,
            "count": config.count,
            "sample_seed": config.sample_seed,
            "runs": entries,
        },
    )
    grid = grid_png(read_samples_h5(entries[0]["path"])[0][:100])
    store_figure(layout, dataset, experiment, "samples", grid)
    extra = (
        class_grid_metadata(layout, dataset, experiment)
        if get_model_spec(storage.experiments.get(experiment).model).conditional
        else {}
    )
    return dg.MaterializeResult(
        metadata={
            "paths": dg.MetadataValue.json([entry["path"] for entry in entries]),
            "count": config.count,
            "sample_seed": config.sample_seed,
            "cached": all(entry["cached"] for entry in entries),
            "seconds": round(time.perf_counter() - started, 2),
            "sample_grid": dg.MetadataValue.md(png_markdown(grid, "samples")),
            **extra,
        },
        data_version=dg.DataVersion(hash_json([entry["content_hash"] for entry in entries])),
    )


def class_grid_metadata(layout: ArtifactLayout, dataset: str, experiment: str) -> dict[str, dg.MetadataValue]:
    """A conditional model's samples drawn for each class, one row per class, stored as a figure and shown."""
    class_grid = grid_png(samples_per_class(layout.trained_runs(dataset, experiment)[0]["checkpoint"]), columns=10)
    store_figure(layout, dataset, experiment, "class_grid", class_grid)
    text = "One row per class (0 at the top)\n\n" + png_markdown(class_grid, "per-class samples")
    return {"class_grid": dg.MetadataValue.md(text)}
