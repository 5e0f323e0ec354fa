"""Resources: where results are stored, and where each dataset's source files come from."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parent.parent
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def default_data_dir() -> str:
    """GAN_PIPELINE_DATA_DIR, else ./data beside the code."""
    return os.environ.get("GAN_PIPELINE_DATA_DIR", str(REPO_ROOT / "data"))


class StorageResource(dg.ConfigurableResource):
    """The data directory. Every file the pipeline writes is below `root_dir`; names cannot escape it."""

    root_dir: str = ""

    @property
    def root(self) -> Path:
        return Path(self.root_dir or default_data_dir()).expanduser().resolve()

    def path(self, *parts: str) -> Path:
        """A path below the root built from safe name components (no separators, no '..')."""
        for part in parts:
            if not _SAFE_NAME.match(part) or part in (".", ".."):
                raise ValueError(f"unsafe path component {part!r}: only letters, digits, '_', '-' and '.' allowed")
        candidate = self.root.joinpath(*parts).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise ValueError(f"path {candidate} escapes the data directory {self.root}")
        return candidate

    def raw_dir(self, dataset: str) -> Path:
        return self.path("raw", dataset)

    def dataset_file(self, dataset: str) -> Path:
        return self.path("datasets", f"{dataset}.h5")

    def model_dir(self, dataset: str, model: str) -> Path:
        return self.path("models", dataset, model)

    def samples_dir(self, dataset: str, model: str) -> Path:
        return self.path("samples", dataset, model)

    def evaluation_dir(self, dataset: str, model: str) -> Path:
        return self.path("evaluation", dataset, model)

    def report_dir(self) -> Path:
        return self.path("reports")


class DatasetSourcesResource(dg.ConfigurableResource):
    """Per-dataset source: empty = official location; an http(s) mirror URL; or a local directory / file path.

    Defaults come from GAN_PIPELINE_SOURCE_<DATASET> environment variables (e.g. GAN_PIPELINE_SOURCE_MNIST).
    """

    mnist: str = ""
    fashion_mnist: str = ""
    cifar10: str = ""
    tfd: str = ""

    def source_for(self, dataset: str) -> str:
        return getattr(self, dataset, "") or ""

    @classmethod
    def from_env(cls) -> DatasetSourcesResource:
        return cls(
            **{
                name: os.environ.get(f"GAN_PIPELINE_SOURCE_{name.upper()}", "")
                for name in ("mnist", "fashion_mnist", "cifar10", "tfd")
            }
        )
