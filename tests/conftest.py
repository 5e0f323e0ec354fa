"""Shared fixtures: a temporary data directory, Dagster definitions bound to it, and a local HTTP mirror."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ASSET_NAMES = (
    "raw_dataset",
    "preprocessed_dataset",
    "feature_classifier",
    "gan_model",
    "generated_samples",
    "parzen_bandwidth",
    "parzen_log_likelihood",
    "evaluation_metrics",
    "paper_figures",
    "evaluation_report",
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def storage(data_dir: Path):  # noqa: ANN201
    from pipelines.resources import StorageResource

    return StorageResource(root_dir=str(data_dir))


@pytest.fixture
def instance() -> Iterator:
    import dagster as dg

    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def mnist_dir() -> Path:
    """The official MNIST .gz files beside the checkout, or in $GAN_PIPELINE_MNIST_DIR (skips where they are absent)."""
    path = Path(os.environ.get("GAN_PIPELINE_MNIST_DIR") or SHARED_DATA / "mnist")
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"official MNIST files not found at {path}")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve_directory() -> Iterator:
    """Start an HTTP server on 127.0.0.1 serving a directory; returns a function dir -> base URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def read_idx_gz(path: Path) -> np.ndarray:
    """An independent IDX reader (not torchvision's), for comparing stored pixels with the source files."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file (the MNIST format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def materialize_dataset(defs, instance, dataset: str = "digits", with_classifier: bool = False):  # noqa: ANN001, ANN201
    """Run dataset_job for one partition; without the feature classifier unless asked (it costs seconds to minutes)."""
    import dagster as dg

    selection = None if with_classifier else [dg.AssetKey("raw_dataset"), dg.AssetKey("preprocessed_dataset")]
    result = defs.resolve_job_def("dataset_job").execute_in_process(
        partition_key=dataset, instance=instance, asset_selection=selection
    )
    assert result.success
    return result
