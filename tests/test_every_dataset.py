"""CIFAR-10 and TFD through the Dagster graph on small files the tests write in the official layouts: CIFAR-10 through
torchvision's real download and extraction code from a mirror on 127.0.0.1 (the tarball's own MD5 passed as an
override), TFD from a .mat file with the official variables."""

from __future__ import annotations

import hashlib
import math
import pickle
import tarfile
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import scipy.io

from assets.partitions import dataset_experiment_key
from assets.resources import DatasetSourcesResource, StorageResource
from pipelines.definitions import build_definitions
from tests.helpers import register_builtin_experiments


def write_cifar10_tarball(directory: Path) -> tuple[Path, np.ndarray]:
    """`cifar-10-python.tar.gz` in the official python-pickle layout (5 training batches of 10,000, a test batch,
    batches.meta): low-entropy images (a colour per class plus a little noise) so the archive stays small."""
    rng = np.random.default_rng(0)
    folder = directory / "build" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    colours = rng.integers(0, 256, (10, 3), dtype=np.uint8)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, 10_000)
        pixels = np.repeat(colours[labels][:, :, None], 1024, axis=2).astype(np.int16)
        pixels[:, :, ::97] += rng.integers(-8, 9, pixels[:, :, ::97].shape, dtype=np.int16)
        data = np.clip(pixels, 0, 255).astype(np.uint8).reshape(10_000, 3072)
        first = data if first is None else first
        # str keys, as the official files (pickled by Python 2) load
        batch = {"batch_label": name, "labels": labels.tolist(), "data": data, "filenames": []}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 10_000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    tarball = directory / "mirror" / "cifar-10-python.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz", compresslevel=1) as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    return tarball, first


@pytest.mark.slow
def test_cifar10_from_a_mirror_through_the_graph(tmp_path, serve_directory) -> None:
    tarball, first_batch = write_cifar10_tarball(tmp_path)
    # torchvision checks the tarball and every file in it: pass all of their MD5s
    written = [tarball, *sorted((tmp_path / "build" / "cifar-10-batches-py").iterdir())]
    overrides = {path.name: hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() for path in written}
    storage = StorageResource(root_dir=str(tmp_path / "data"))
    defs = build_definitions(storage=storage)
    raw = {"source": serve_directory(tarball.parent), "md5_overrides": overrides}
    with dg.instance_for_test() as instance:
        register_builtin_experiments(instance)
        data = defs.resolve_job_def("dataset_job").execute_in_process(
            partition_key="cifar10",
            instance=instance,
            asset_selection=[dg.AssetKey("raw_dataset"), dg.AssetKey("preprocessed_dataset")],
            run_config={"ops": {"raw_dataset": {"config": raw}}},
        )
        assert data.success
        assert all(e.passed for e in data.get_asset_check_evaluations()), data.get_asset_check_evaluations()
        from gan_core.data import load_split_arrays

        train = load_split_arrays(storage.layout.dataset_file("cifar10"), "train")
        assert train.images.shape == (40_000, 3, 32, 32)
        np.testing.assert_array_equal(train.images[:10_000], first_batch.reshape(10_000, 3, 32, 32))
        # a few steps of the convolutional model; the paper's CIFAR-10 MLP (paper_mlp_large, 64 million weights and
        # a 1 GB checkpoint here) trains in test_training's model x loss grid
        for model in ("dcgan",):
            trained = defs.resolve_job_def("training_job").execute_in_process(
                partition_key=dataset_experiment_key("cifar10", model),
                instance=instance,
                asset_selection=[dg.AssetKey("gan_model"), dg.AssetKey("generated_samples")],
                run_config={
                    "ops": {
                        "gan_model": {"config": {"epochs": 1, "max_train_images": 200}},
                        "generated_samples": {"config": {"count": 100}},
                    }
                },
            )
            assert trained.success, model
            checks = {e.check_name: e.passed for e in trained.get_asset_check_evaluations()}
            assert checks["training_did_not_diverge"] and checks["samples_finite_in_unit_range"], (model, checks)
            history = storage.layout.trained_runs("cifar10", model)[0]
            assert history["steps"] >= 1 and math.isfinite(history["wall_seconds"])


def write_tfd_mat(path: Path, count: int = 420) -> None:
    """A small TFD_48x48.mat with the official variables: images (N x 48 x 48 uint8), folds (N x 5: 1 train,
    2 valid, 3 test, 0 unlabelled), labs_ex (expression 1..7)."""
    rng = np.random.default_rng(2)
    labels = np.arange(count) % 7 + 1
    base = rng.integers(0, 256, (7, 48, 48))
    images = np.clip(base[labels - 1] + rng.integers(-20, 21, (count, 48, 48)), 0, 255).astype(np.uint8)
    folds = np.zeros((count, 5), dtype=np.int32)
    folds[:, 0] = np.where(np.arange(count) < 300, 1, np.where(np.arange(count) < 360, 2, 3))
    scipy.io.savemat(path, {"images": images, "folds": folds, "labs_ex": labels[:, None] - 1})


def test_tfd_from_a_mat_file_through_the_whole_graph(tmp_path) -> None:
    mat = tmp_path / "TFD_48x48.mat"
    write_tfd_mat(mat)
    storage = StorageResource(root_dir=str(tmp_path / "data"))
    defs = build_definitions(storage=storage, sources=DatasetSourcesResource(sources={"tfd": str(mat)}))
    with dg.instance_for_test() as instance:
        register_builtin_experiments(instance)
        data = defs.resolve_job_def("dataset_job").execute_in_process(
            partition_key="tfd",
            instance=instance,
            run_config={"ops": {"feature_classifier": {"config": {"epochs": 3}}}},
        )
        assert data.success
        run_config = {
            "ops": {
                "gan_model": {"config": {"epochs": 2, "batch_size": 50}},
                "generated_samples": {"config": {"count": 500}},
                "parzen_bandwidth": {"config": {"n_valid": 60}},
            }
        }
        trained = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("tfd", "dcgan"), instance=instance, run_config=run_config
        )
        assert trained.success
        failed = [
            e.check_name for e in trained.get_asset_check_evaluations() if not e.passed and e.severity.value == "ERROR"
        ]
        assert failed == []
        report = defs.resolve_job_def("report_job").execute_in_process(instance=instance)
        assert report.success
        metadata = report.asset_materializations_for_node("evaluation_report")[0].metadata
        assert metadata["partitions"].value == ["tfd|dcgan"]
        rows = {r.data["model"]: r.data for r in metadata["table"].value.records}
        assert rows["dcgan"]["dataset"] == "tfd" and "Adversarial nets" in rows  # beside the paper's TFD rows
        assert math.isfinite(
            storage.layout.read_partition_index("parzen", "tfd", "dcgan")["runs"][0]["mean_log_likelihood"]
        )
