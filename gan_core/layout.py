"""Every stored path and file name below the data root, and the typed records stored there.

    experiments.json                    experiments added at run time (gan_core.experiments)
    raw/<dataset>/                      source files + manifest.json (checksums)
    datasets/<dataset>.h5               train/valid/test splits (gan_core.data)
    models/<dataset>/feature_classifier.{pt,json}
    models/<dataset>/<model>/<run identity>/checkpoint.pt + run.json      one trained seed
    models/<dataset>/<model>/<run identity>/checkpoint.{prev,best}.pt      the one before, the monitor's best
    models/<dataset>/<model>/<run identity>/tensorboard/                  its TensorBoard events (gan_core.tensorboard)
    models/<dataset>/<model>/latest.json                                  the partition's current runs
    exports/<dataset>/<model>/<run identity>/generator.{onnx,ts} + export.json   its generator, exported
    exports/<dataset>/<model>/latest.json
    promoted/<dataset>/generator.{onnx,ts} + promotion.json            the dataset's promoted generator
    promoted/<dataset>/candidate.json                                   the candidate picked last (and judged)
    samples/<dataset>/<model>/<run identity>_n<count>_s<seed>.{h5,json}   one seed's samples
    samples/<dataset>/<model>/latest.json
    evaluation/<dataset>/<model>/<kind>_<key>.json                        one seed's bandwidth / parzen / metrics /
                                                                          reproduction (a best or last checkpoint)
    evaluation/<dataset>/<model>/<kind>.json                              the partition's current results of a kind
    evaluation/<dataset>/<kind>_<key>.json                                per-dataset reference results
    figures/<dataset>/<model>/<figure>.png              samples, loss_curves, sigma_search, figure2_*, figure3_*
    reports/report.{html,md}, reports/*.csv

<model> above is the partition's experiment (gan_core.experiments): a built-in experiment is named after its model
entry, so its results keep the keys they had before experiments existed.

Results are keyed by a content hash of everything they depend on, never "the latest file" (gan_core.records:
`compute_or_load`; gan_core.locks: one process at a time). Nothing outside this module writes a file name, but the
lock files beside a locked path (gan_core.locks).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from gan_core.records import read_record, write_record

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"  # the last good checkpoint before the current one
BEST_CHECKPOINT_NAME = "checkpoint.best.pt"  # the checkpoint of the best validation monitor estimate (gan_core.monitor)
RUN_RECORD_NAME = "run.json"
LABELLED_SUBSET_NAME = "labelled_subset.json"  # a semi-supervised run's labelled training images (by index)
RAW_MANIFEST_NAME = "manifest.json"
PARTITION_INDEX_NAME = "latest.json"
EXPERIMENTS_NAME = "experiments.json"
TENSORBOARD_NAME = "tensorboard"
HPARAMS_SUFFIX = ".hparams"  # the event file holding a run's hparams and final metrics (one a run)
ONNX_EXPORT_NAME = "generator.onnx"
TORCHSCRIPT_EXPORT_NAME = "generator.ts"
EXPORT_RECORD_NAME = "export.json"
PROMOTION_RECORD_NAME = "promotion.json"
CANDIDATE_RECORD_NAME = "candidate.json"

PartitionKind = Literal["models", "samples", "bandwidth", "parzen", "metrics", "exports", "reproduction", "inference"]
EvaluationKind = Literal["bandwidth", "parzen", "metrics", "reproduction", "inference"]
ReferenceKind = Literal["reference_real_train", "reference_metrics"]
# Each figure is written by one asset: samples and class_grid (generated_samples), loss_curves (gan_model), sigma_search
# (parzen_bandwidth), figure2/figure3 (paper_figures), reconstructions (latent_encoder); the report embeds them.
FigureName = Literal[
    "samples",
    "class_grid",
    "loss_curves",
    "sigma_search",
    "figure2_nearest_neighbours",
    "figure3_interpolations",
    "reconstructions",
]
_EVALUATION_KINDS = ("bandwidth", "parzen", "metrics", "reproduction", "inference")
_WRITTEN_BY = {
    "models": "gan_model",
    "samples": "generated_samples",
    "bandwidth": "parzen_bandwidth",
    "parzen": "parzen_log_likelihood",
    "metrics": "evaluation_metrics",
    "exports": "exported_generator",
    "reproduction": "reproduction_scores",
    "inference": "latent_encoder",
}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # matched whole (fullmatch)


class StoredRecord(TypedDict):
    """What every cached record holds besides its own fields: the key it was computed under, the files it owns
    (checked to exist before the record is reused), and, once returned by an asset, whether it came from the store."""

    key: str
    files: list[str]
    cached: bool


class TrainedRun(StoredRecord):
    """One trained seed: `models/<dataset>/<model>/<identity>/run.json`."""

    seed: int
    identity: str  # hash of (train config, dataset content hash, code version): the run directory's name
    checkpoint: str
    weights_hash: str
    config: dict[str, Any]
    epochs: int
    steps: int
    wall_seconds: float
    images_per_second: float
    device: str


class SampleSet(StoredRecord):
    """One seed's samples: `samples/<dataset>/<model>/<identity>_n<count>_s<seed>.{h5,json}`."""

    seed: int
    path: str
    content_hash: str


class SigmaSearch(StoredRecord):
    """One seed's Parzen bandwidth search on validation images."""

    seed: int
    samples_path: str
    samples_hash: str
    sigma: float
    valid_mean_by_sigma: list[list[float]]
    n_valid: int
    seconds: float


class ParzenScore(StoredRecord):
    """One seed's Parzen log-likelihood of the test images (a row of Table 1)."""

    dataset: str
    model: str
    seed: int
    sigma: float
    mean_log_likelihood: float
    standard_error: float
    std: float
    n_samples: int
    n_test: int
    seconds: float


class ClassifierRecord(StoredRecord):
    """The feature classifier of a dataset: `models/<dataset>/feature_classifier.json` beside its weights."""

    test_accuracy: float
    epochs: int
    seconds: float


def checkpoint_file(run_dir: str | os.PathLike[str]) -> Path:
    """The training checkpoint inside a run directory."""
    return Path(run_dir) / CHECKPOINT_NAME


def labelled_subset_file(run_dir: str | os.PathLike[str]) -> Path:
    """The indices of the training images a semi-supervised run keeps labelled (gan_core.semi_supervised)."""
    return Path(run_dir) / LABELLED_SUBSET_NAME


def previous_checkpoint_file(run_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint before the current one, kept so that a damaged current one loses one interval at most."""
    return Path(run_dir) / PREVIOUS_CHECKPOINT_NAME


def best_checkpoint_file(run_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint of the epoch with the best validation monitor estimate so far (TrainConfig.monitor_every)."""
    return Path(run_dir) / BEST_CHECKPOINT_NAME


def tensorboard_dir(run_dir: str | os.PathLike[str]) -> Path:
    """The TensorBoard event files of a run (`tensorboard --logdir <data root>/models` finds every run's)."""
    return Path(run_dir) / TENSORBOARD_NAME


@dataclasses.dataclass(frozen=True)
class TorchrunFiles:
    """What a torchrun training run leaves in its run directory besides the checkpoint."""

    settings: Path  # what every rank trains (written by the asset)
    failures: Path  # each failed rank's exit code, signal and error (written by the launcher)
    logs: Path  # torchrun's per-rank stdout/stderr


def torchrun_files(run_dir: str | os.PathLike[str]) -> TorchrunFiles:
    run_dir = Path(run_dir)
    return TorchrunFiles(run_dir / "torchrun.json", run_dir / "torchrun_failures.json", run_dir / "torchrun_logs")


@dataclasses.dataclass(frozen=True)
class ExportFiles:
    """One exported generator: ONNX, TorchScript, and the record of where it came from."""

    onnx: Path
    torchscript: Path
    record: Path


def export_files(directory: str | os.PathLike[str], record: str = EXPORT_RECORD_NAME) -> ExportFiles:
    directory = Path(directory)
    return ExportFiles(directory / ONNX_EXPORT_NAME, directory / TORCHSCRIPT_EXPORT_NAME, directory / record)


class ArtifactLayout:
    """Paths below one data root. Every component is checked, so no name can escape the root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def path(self, *parts: str) -> Path:
        """A path below the root built from safe name components (no separators, no '..')."""
        for part in parts:
            if not _SAFE_NAME.fullmatch(part) or part in (".", ".."):
                raise ValueError(f"unsafe path component {part!r}: only letters, digits, '_', '-' and '.' allowed")
        candidate = self.root.joinpath(*parts).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise ValueError(f"path {candidate} escapes the data directory {self.root}")
        return candidate

    def experiments_file(self) -> Path:
        """The experiments added at run time (`gan-pipeline experiment add`, `gan-pipeline sweep`)."""
        return self.path(EXPERIMENTS_NAME)

    # datasets
    def raw_dir(self, dataset: str) -> Path:
        return self.path("raw", dataset)

    def dataset_file(self, dataset: str) -> Path:
        return self.path("datasets", f"{dataset}.h5")

    def classifier_weights(self, dataset: str) -> Path:
        return self.path("models", dataset, "feature_classifier.pt")

    def classifier_record(self, dataset: str) -> Path:
        return self.path("models", dataset, "feature_classifier.json")

    # trained runs and samples
    def models_dir(self) -> Path:
        """Every trained run below it: TensorBoard's --logdir (each run's events are in its run directory)."""
        return self.path("models")

    def run_dir(self, dataset: str, model: str, identity: str) -> Path:
        return self.path("models", dataset, model, identity)

    def run_record(self, dataset: str, model: str, identity: str) -> Path:
        return self.run_dir(dataset, model, identity) / RUN_RECORD_NAME

    def samples_file(self, dataset: str, model: str, identity: str, count: int, seed: int) -> Path:
        return self.path("samples", dataset, model, f"{identity}_n{count}_s{seed}.h5")

    def samples_record(self, dataset: str, model: str, identity: str, count: int, seed: int) -> Path:
        return self.samples_file(dataset, model, identity, count, seed).with_suffix(".json")

    # evaluation
    def evaluation_record(self, kind: EvaluationKind, dataset: str, model: str, key: str) -> Path:
        return self.path("evaluation", dataset, model, f"{kind}_{key}.json")

    def encoder_weights(self, dataset: str, model: str, key: str) -> Path:
        """A learned inverse E of one seed's generator (gan_core.inference), beside its record."""
        return self.path("evaluation", dataset, model, f"encoder_{key}.pt")

    def reference_record(self, kind: ReferenceKind, dataset: str, key: str) -> Path:
        return self.path("evaluation", dataset, f"{kind}_{key}.json")

    def partition_index(self, kind: PartitionKind, dataset: str, model: str) -> Path:
        """The record of a partition's current results of one kind (what downstream assets read)."""
        if kind in _EVALUATION_KINDS:
            return self.path("evaluation", dataset, model, f"{kind}.json")
        return self.path(kind, dataset, model, PARTITION_INDEX_NAME)

    def read_partition_index(self, kind: PartitionKind, dataset: str, model: str) -> dict[str, Any]:
        """A partition's current results of one kind; a missing one names the asset that writes it."""
        return read_record(self.partition_index(kind, dataset, model), f"{_WRITTEN_BY[kind]} for {dataset}|{model}")

    def trained_runs(self, dataset: str, model: str) -> list[TrainedRun]:
        return cast(list[TrainedRun], self.read_partition_index("models", dataset, model)["runs"])

    def sample_sets(self, dataset: str, model: str) -> list[SampleSet]:
        return cast(list[SampleSet], self.read_partition_index("samples", dataset, model)["runs"])

    def sigma_searches(self, dataset: str, model: str) -> list[SigmaSearch]:
        return cast(list[SigmaSearch], self.read_partition_index("bandwidth", dataset, model)["runs"])

    def parzen_scores(self, dataset: str, model: str) -> list[ParzenScore]:
        return cast(list[ParzenScore], self.read_partition_index("parzen", dataset, model)["runs"])

    def classifier(self, dataset: str) -> ClassifierRecord:
        return cast(ClassifierRecord, read_record(self.classifier_record(dataset), f"feature_classifier for {dataset}"))

    def write_partition_index(self, kind: PartitionKind, dataset: str, model: str, record: dict[str, Any]) -> None:
        write_record(self.partition_index(kind, dataset, model), record)

    def stored_experiments(self, kind: PartitionKind, dataset: str) -> list[str]:
        """The experiments of `dataset` with a stored index of `kind`, sorted."""
        pattern = f"*/{kind}.json" if kind in _EVALUATION_KINDS else f"*/{PARTITION_INDEX_NAME}"
        top = self.path("evaluation" if kind in _EVALUATION_KINDS else kind, dataset)
        return sorted(path.parent.name for path in top.glob(pattern))

    def partition_indexes(self, kind: EvaluationKind) -> Iterator[Path]:
        """Every partition's index of an evaluation kind, sorted."""
        yield from sorted(self.path("evaluation").glob(f"*/*/{kind}.json"))

    # exported and promoted generators
    def export_dir(self, dataset: str, model: str, identity: str) -> Path:
        return self.path("exports", dataset, model, identity)

    def export_files(self, dataset: str, model: str, identity: str) -> ExportFiles:
        return export_files(self.export_dir(dataset, model, identity))

    def promoted_files(self, dataset: str) -> ExportFiles:
        """The stable path of a dataset's promoted generator (what a consumer loads), with its promotion record."""
        return export_files(self.path("promoted", dataset), record=PROMOTION_RECORD_NAME)

    def promotion_candidate(self, dataset: str) -> Path:
        """The generator `generator_candidate` picked last, before the promotion check judged it."""
        return self.path("promoted", dataset, CANDIDATE_RECORD_NAME)

    # figures and reports
    def figure(self, dataset: str, model: str, name: FigureName) -> Path:
        return self.path("figures", dataset, model, f"{name}.png")

    def figures(self) -> dict[str, dict[str, Path]]:
        """Every stored figure: {"<dataset>|<model>": {figure name: path}}, sorted by partition."""
        found: dict[str, dict[str, Path]] = {}
        for path in sorted(self.path("figures").glob("*/*/*.png")):
            found.setdefault(f"{path.parent.parent.name}|{path.parent.name}", {})[path.stem] = path
        return found

    def report_dir(self) -> Path:
        return self.path("reports")

    def report_file(self, name: str) -> Path:
        """A report file: report.html, report.md, <table>.csv."""
        return self.path("reports", name)
