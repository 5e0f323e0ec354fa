"""Resources: where results are stored, and where each dataset's source files come from."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from gan_core.experiments import ExperimentRegistry
from gan_core.layout import ArtifactLayout
from gan_core.sources import get_dataset_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_VARIABLE = "GAN_PIPELINE_DATA_DIR"
DECLARED_EXPERIMENTS = REPO_ROOT / "experiments.yaml"  # the checked-in experiments (gan_core.experiments)


class StorageResource(dg.ConfigurableResource):
    """The data directory (default: $GAN_PIPELINE_DATA_DIR, read when a run starts, else ./data beside the code) and
    the experiments known there (`experiments`).
    Every path below it comes from `layout` (gan_core.layout.ArtifactLayout); names cannot escape it."""

    root_dir: str = ""
    # the checked-in experiments file (YAML); empty: experiments.yaml beside the code
    experiments_file: str = ""

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout(self.root_dir or os.environ.get(DATA_DIR_VARIABLE) or REPO_ROOT / "data")

    @property
    def experiments(self) -> ExperimentRegistry:
        """Every experiment: the built-ins, the checked-in file's and those added at run time in the data root."""
        declared = Path(self.experiments_file) if self.experiments_file else DECLARED_EXPERIMENTS
        return ExperimentRegistry(self.layout.experiments_file(), declared)


class DatasetSourcesResource(dg.ConfigurableResource):
    """Per-dataset source: empty = official location; an http(s) mirror URL; or a local directory / file path.

    `sources` maps dataset names to sources; a dataset not listed there reads its environment variable
    (GAN_PIPELINE_SOURCE_<DATASET>, e.g. GAN_PIPELINE_SOURCE_MNIST) when the run needs it, not when the code loads.
    """

    sources: dict[str, str] = {}

    def source_for(self, dataset: str) -> str:
        spec = get_dataset_spec(dataset)
        if dataset in self.sources:
            return self.sources[dataset]
        return os.environ.get(spec.source_variable, "")
