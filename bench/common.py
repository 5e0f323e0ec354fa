"""What the bench scripts share: the dataset file in a data directory (made on first use), laid out as the pipeline
lays it out (gan_core.layout). Bench scripts import this module (`from common import ...`; Python puts bench/ on the
path when it runs a script there); run it directly to prepare a dataset:

    python bench/common.py --dataset mnist --source ../shared/data/mnist --data-dir data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gan_core.data import read_dataset_info, write_dataset_h5
from gan_core.layout import ArtifactLayout
from gan_core.sources import build_splits, fetch_raw, get_dataset_spec


def ensure_dataset(name: str, source: str, data_dir: str | Path) -> Path:
    """The dataset file of `name` in `data_dir`, fetched from `source` and written first if it is absent."""
    layout = ArtifactLayout(data_dir)
    path = layout.dataset_file(name)
    if not path.exists():
        manifest = fetch_raw(name, layout.raw_dir(name), source)
        splits = build_splits(name, layout.raw_dir(name))
        write_dataset_h5(path, name, splits, manifest["files"], get_dataset_spec(name).split_definition)
    read_dataset_info(path)
    return path


def write_json(path: str | Path, payload: dict) -> None:
    """A bench script's figures as indented JSON (for bench/results and RESULTS.md)."""
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def ensure_mnist(source: str, data_dir: str | Path) -> Path:
    """The MNIST dataset file (the bench scripts' default data)."""
    return ensure_dataset("mnist", source, data_dir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--source", default="", help="mirror URL or directory of the original files")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    print(ensure_dataset(args.dataset, args.source, args.data_dir))
