"""Plain test helpers (not fixtures): file-format writers and readers, the asset list, and a dataset job runner."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# Screenshots and other files a person may want to look at after a test run (git-ignored).
TEST_ARTIFACTS = Path(os.environ.get("GAN_PIPELINE_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Debian's packages behind the server and browser tests; a test that finds one missing skips with this line (and
# `--fail-on-skip`, which .ci/run sets, turns that skip into a failure: CI installs them)
TEST_PACKAGES_LINE = "apt-get update && apt-get install -y chromium postgresql redis-server"
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


def register_builtin_experiments(instance) -> None:  # noqa: ANN001
    """Make every model entry's built-in experiment a partition of `instance` (what `gan-pipeline` and the
    `experiment_partitions` sensor do for a real instance)."""
    from assets.partitions import register_experiments
    from gan_core.models import MODELS

    register_experiments(instance, MODELS)


def materialize_dataset(defs, instance, dataset: str = "digits", with_classifier: bool = False):  # noqa: ANN001, ANN201
    """Run dataset_job for one partition; without the feature classifier unless asked (it costs seconds to minutes).
    The built-in experiments become partitions of `instance`, for the training that follows."""
    import dagster as dg

    register_builtin_experiments(instance)
    selection = None if with_classifier else [dg.AssetKey("raw_dataset"), dg.AssetKey("preprocessed_dataset")]
    result = defs.resolve_job_def("dataset_job").execute_in_process(
        partition_key=dataset, instance=instance, asset_selection=selection
    )
    assert result.success
    return result


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator:
    """A page of Debian's headless Chromium driven by Playwright; skips, naming the install line, when it is missing."""
    import pytest

    if CHROMIUM is None:
        pytest.skip(f"needs Debian's chromium: {TEST_PACKAGES_LINE}")
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


@contextlib.contextmanager
def digits_graph(data: Path) -> Iterator:
    """(storage, definitions, instance) over `data`, a copy of the built digits data (the `digits_data` fixture), with
    the digits dataset and its feature classifier materialised in a new instance (found stored: seconds)."""
    import dagster as dg

    from assets.resources import StorageResource
    from pipelines.definitions import build_definitions

    storage = StorageResource(root_dir=str(data))
    defs = build_definitions(storage=storage)
    with dg.instance_for_test() as instance:
        materialize_dataset(defs, instance, "digits", with_classifier=True)
        yield storage, defs, instance


def uninterrupted_samples_hash(data: Path, epochs: int, count: int) -> str:
    """The hash of `count` samples (seed 0) of an uninterrupted run of paper_mlp on the digits of `data` for `epochs`
    epochs with the paper's settings, in a directory of its own (train_gan and generate: the assets' own code)."""
    from gan_core.config import RuntimeOptions, default_train_config
    from gan_core.data import load_split
    from gan_core.sample import generate, load_generator, samples_hash
    from gan_core.train import train_gan

    train = load_split(data / "datasets" / "digits.h5", "train")
    config = default_train_config("paper_mlp", epochs=epochs)
    result = train_gan(
        config, train, data.parent / f"uninterrupted_{epochs}", RuntimeOptions(device="cpu", progress=False)
    )
    return samples_hash(generate(load_generator(result.checkpoint_path, "cpu"), count, seed=0))


def latest_samples_hash(data: Path, dataset: str = "digits", experiment: str = "paper_mlp") -> str:
    """The content hash of the first seed's samples the partition's last sampling stored."""
    import json

    index = json.loads((data / "samples" / dataset / experiment / "latest.json").read_text())
    return index["runs"][0]["content_hash"]
