"""Beyond the paper: a per-dataset feature classifier, modern sample metrics per partition, and the paper's figures.

All offline: the feature space is the penultimate layer of a small classifier trained here on the dataset itself.
"""

import functools
import time

import dagster as dg
import numpy as np
import torch

from assets.common import (
    checked_partition,
    compute_or_load_each,
    dataset_and_experiment,
    guarded_step,
    partition_asset,
    progress_bars,
    publish_hparams,
    store_figure,
)
from assets.configs import ClassifierConfig
from assets.data_assets import preprocessed_dataset
from assets.model_assets import generated_samples
from assets.partitions import dataset_partitions
from assets.resources import StorageResource
from gan_core import metrics
from gan_core.classifier import default_epochs, load_classifier, train_dataset_classifier
from gan_core.data import load_split, load_split_arrays, read_dataset_info
from gan_core.devices import resolve_device
from gan_core.layout import ArtifactLayout
from gan_core.models import get_model_spec, sample_noise
from gan_core.plots import grid_png, png_markdown
from gan_core.records import compute_or_load
from gan_core.sample import generate_from_noise, load_generator, read_sample_labels, read_samples_h5
from gan_core.semi_supervised import semi_supervised_scores
from gan_core.sources import get_dataset_spec
from gan_core.storage import hash_json

METRICS_CODE_VERSION = "3"  # 3: KID's cubic kernel by multiplication (equal to the last bit or so; 7x faster)
MAX_REFERENCE = 10_000


@dg.asset(
    partitions_def=dataset_partitions,
    deps=[preprocessed_dataset],
    code_version=METRICS_CODE_VERSION,
    pool="gpu",
    group_name="metrics",
    kinds={"pytorch"},
)
@guarded_step
def feature_classifier(
    context: dg.AssetExecutionContext, config: ClassifierConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """A small CNN trained on the dataset's train split: the offline feature space and class predictions for FD, KID,
    precision/recall, density/coverage, class coverage and inception score."""
    dataset, layout = context.partition_key, storage.layout
    info = read_dataset_info(layout.dataset_file(dataset))
    epochs = config.epochs or default_epochs(info.split_sizes["train"])
    weights = str(layout.classifier_weights(dataset))

    def train_and_score() -> dict:
        num_classes = get_dataset_spec(dataset).num_classes
        result = train_dataset_classifier(
            info.path, weights, num_classes, epochs, config.seed, config.device, context.log.info, progress_bars()
        )
        return {
            "test_accuracy": result.test_accuracy,
            "epochs": epochs,
            "seconds": result.seconds,
            "files": [str(weights)],
        }

    record, cached = compute_or_load(
        layout.classifier_record(dataset),
        {"data": info.content_hash, "epochs": epochs, "seed": config.seed, "code": METRICS_CODE_VERSION},
        train_and_score,
    )
    context.log.info(
        f"{dataset} classifier test accuracy {record['test_accuracy']:.4f} ({'cached' if cached else 'trained'})"
    )
    return dg.MaterializeResult(
        metadata={
            "test_accuracy": record["test_accuracy"],
            "epochs": epochs,
            "seconds": round(record["seconds"], 1),
            "cached": cached,
            "path": dg.MetadataValue.path(weights),
            "device": str(resolve_device(config.device)),
        },
        data_version=dg.DataVersion(record["key"]),
    )


@dg.asset_check(
    asset=feature_classifier,
    description="Test accuracy reaches the dataset's target (its DatasetSpec.classifier_accuracy_target); warns "
    "otherwise, since every metric depends on this feature space.",
)
def classifier_accuracy_target(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    accuracy = storage.layout.classifier(dataset)["test_accuracy"]
    target = get_dataset_spec(dataset).classifier_accuracy_target
    return dg.AssetCheckResult(
        passed=accuracy >= target,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"test accuracy {accuracy:.4f}, target {target}",
        metadata={"test_accuracy": accuracy, "target": target},
    )


def reference_set(layout: ArtifactLayout, dataset: str, n: int) -> metrics.ReferenceSet:
    """The real images every score compares with: the first n training images (features, labels, pixels)."""
    classifier = load_classifier(layout.classifier_weights(dataset))
    return metrics.build_reference_set(
        layout.dataset_file(dataset), classifier, get_dataset_spec(dataset).num_classes, n
    )


def score_images(images: np.ndarray, reference: metrics.ReferenceSet, asked: np.ndarray | None = None) -> dict:
    """Every metric of `images`; `asked`: the labels they stand for (conditional samples, labelled real images)."""
    return metrics.score_against(images, reference, device=str(resolve_device("auto")), asked=asked).to_dict()


@partition_asset(
    deps=[generated_samples, feature_classifier],
    code_version=METRICS_CODE_VERSION,
    group_name="metrics",
)
def evaluation_metrics(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """FD, KID, improved precision/recall, density/coverage, class coverage and KL, inception score and the
    memorisation ratio of each seed's samples against real training images; for a semi-supervised model, its
    discriminator's test error beside a supervised baseline trained on its labelled images alone
    (gan_core.semi_supervised)."""
    dataset, experiment, layout = checked_partition(context, storage)
    classifier_key = layout.classifier(dataset)["key"]
    n_train = read_dataset_info(layout.dataset_file(dataset)).split_sizes["train"]
    reference = None
    semi_supervised = get_model_spec(storage.experiments.get(experiment).model).semi_supervised
    trained = {run["seed"]: run for run in layout.trained_runs(dataset, experiment)}
    labelled_splits = functools.cache(lambda: train_and_test(layout, dataset))  # read once, for the seeds not stored

    def score(entry: dict) -> dict:
        nonlocal reference
        samples = read_samples_h5(entry["path"])[0]
        asked = read_sample_labels(entry["path"])
        reference = reference or reference_set(layout, dataset, min(MAX_REFERENCE, len(samples), n_train))
        started = time.perf_counter()
        count = len(reference.images)
        return {
            "dataset": dataset,
            "model": experiment,
            "seed": entry["seed"],
            **score_images(samples[:count], reference, None if asked is None else asked[:count]),
            **(semi_supervised_row(dataset, trained[entry["seed"]], *labelled_splits()) if semi_supervised else {}),
            "seconds": time.perf_counter() - started,
        }

    def key_parts(entry: dict) -> dict:
        parts = {"samples": entry["content_hash"], "classifier": classifier_key, "code": METRICS_CODE_VERSION}
        if semi_supervised:  # the discriminator's error: the weights, not only the samples
            parts["weights"] = trained[entry["seed"]]["weights_hash"]
        return parts

    sample_sets = layout.sample_sets(dataset, experiment)
    runs = compute_or_load_each(
        context,
        sample_sets,
        lambda entry, key: layout.evaluation_record("metrics", dataset, experiment, key),
        key_parts,
        score,
        describe_metrics,
    )
    # the samples each seed's metrics score: gan_core.promotion tells current metrics from earlier ones by them
    samples_hashes = [entry["content_hash"] for entry in sample_sets]
    layout.write_partition_index("metrics", dataset, experiment, {"runs": runs, "samples_hashes": samples_hashes})
    publish_hparams(storage, dataset, experiment)
    first = runs[0]
    shown = metrics.METRIC_COLUMNS
    return dg.MaterializeResult(
        metadata={
            **{name: float(first[name]) for name in shown if first.get(name) is not None},
            "seeds": len(runs),
            "cached": all(run["cached"] for run in runs),
            "n_reference": first["n_reference"],
        },
        data_version=dg.DataVersion(hash_json([run["key"] for run in runs])),
    )


@partition_asset(
    deps=[generated_samples],
    code_version=METRICS_CODE_VERSION,
    group_name="metrics",
    pool=None,
)
def paper_figures(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """The paper's Figure 2 (samples beside their nearest training image) and Figure 3 (linear interpolations in latent
    space), as PNGs."""
    dataset, experiment = dataset_and_experiment(context)
    layout = storage.layout
    entry = layout.sample_sets(dataset, experiment)[0]
    checkpoint = layout.trained_runs(dataset, experiment)[0]["checkpoint"]
    samples = read_samples_h5(entry["path"])[0][:30]
    train = load_split(layout.dataset_file(dataset), "train").numpy()
    nearest = train[metrics.nearest_training_images(samples, train)]
    rows = []
    for block in range(3):  # pairs of rows: 10 samples, then each one's nearest training image
        rows += [samples[block * 10 : block * 10 + 10], nearest[block * 10 : block * 10 + 10]]
    figure2 = grid_png(np.concatenate(rows), columns=10)
    loaded = load_generator(checkpoint, "cpu")
    rng = torch.Generator().manual_seed(0)
    ends = sample_noise(16, loaded.noise_dim, loaded.noise, "cpu", generator=rng).view(8, 2, -1)
    steps = torch.linspace(0, 1, 10)[None, :, None]
    latents = (ends[:, :1] * (1 - steps) + ends[:, 1:] * steps).reshape(80, -1)
    figure3 = grid_png(generate_from_noise(loaded, latents), columns=10)
    paths = {
        "figure2_nearest_neighbours": store_figure(layout, dataset, experiment, "figure2_nearest_neighbours", figure2),
        "figure3_interpolations": store_figure(layout, dataset, experiment, "figure3_interpolations", figure3),
    }
    return dg.MaterializeResult(
        metadata={
            "figure2": dg.MetadataValue.md(
                "Samples (odd rows) above their nearest training image (even rows)\n\n"
                + png_markdown(figure2, "figure 2")
            ),
            "figure3": dg.MetadataValue.md(
                "Linear interpolations between random latent vectors\n\n" + png_markdown(figure3, "figure 3")
            ),
            "paths": dg.MetadataValue.json(paths),
        },
        data_version=dg.DataVersion(hash_json([entry["content_hash"], checkpoint])),
    )


LabelledSplit = tuple[torch.Tensor, np.ndarray]  # a split's images and their labels


def train_and_test(layout: ArtifactLayout, dataset: str) -> tuple[LabelledSplit, LabelledSplit]:
    """The training and test splits of `dataset`, each as (images, labels)."""
    path = layout.dataset_file(dataset)
    return tuple((load_split(path, split), load_split_arrays(path, split).labels) for split in ("train", "test"))  # type: ignore[return-value]


def semi_supervised_row(dataset: str, run: dict, train: LabelledSplit, test: LabelledSplit) -> dict:
    """A semi-supervised run's `ssl_test_error` and `supervised_baseline_error` (gan_core.semi_supervised)."""
    num_classes = get_dataset_spec(dataset).num_classes
    return semi_supervised_scores(run["checkpoint"], train, test, num_classes, str(resolve_device("auto")))


def describe_metrics(run: dict) -> str:
    """A seed's metrics in one log line."""
    line = (
        f"FD {run['frechet_distance']:.2f} precision {run['precision']:.3f} recall {run['recall']:.3f} "
        f"class coverage {run['class_coverage']:.2f}"
    )
    if "ssl_test_error" in run:
        line += f"; test error {run['ssl_test_error']:.4f} (supervised baseline {run['supervised_baseline_error']:.4f})"
    return line


def reference_metrics(layout: ArtifactLayout, dataset: str) -> list[dict]:
    """Metric rows for real test images and for a memorising 'model' that returns the reference training images,
    scored against the same reference set as the models (cached by the classifier's key)."""
    if not layout.classifier_record(dataset).is_file():
        return []
    info = read_dataset_info(layout.dataset_file(dataset))
    n = min(MAX_REFERENCE, info.split_sizes["train"])
    classifier_key = layout.classifier(dataset)["key"]

    def score_references() -> dict:
        reference = reference_set(layout, dataset, n)
        test = load_split(info.path, "test", limit=n).numpy()
        test_labels = load_split_arrays(info.path, "test").labels[:n]
        return {
            "rows": [
                {
                    "dataset": dataset,
                    "model": f"real test images (n={len(test)})",
                    **score_images(test, reference, test_labels),
                },
                {
                    "dataset": dataset,
                    "model": f"memorising model: training images (n={n})",
                    **score_images(reference.images, reference, reference.labels),
                },
            ]
        }

    return compute_or_load(
        lambda key: layout.reference_record("reference_metrics", dataset, key),
        {"classifier": classifier_key, "n": n, "code": METRICS_CODE_VERSION},
        score_references,
    )[0]["rows"]
