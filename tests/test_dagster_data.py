"""The dataset assets and their checks, materialised through Dagster in-process with a shared test instance."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import scipy.io

from assets.resources import DatasetSourcesResource
from gan_core.data import load_split_arrays
from gan_core.storage import sha256_file
from pipelines.definitions import build_definitions
from tests.helpers import ASSET_NAMES, REPO_ROOT, read_idx_gz


def run_dataset_job(defs: dg.Definitions, instance: dg.DagsterInstance, dataset: str, **kwargs):  # noqa: ANN201
    return defs.resolve_job_def("dataset_job").execute_in_process(
        partition_key=dataset, instance=instance, raise_on_error=False, **kwargs
    )


def data_version(instance: dg.DagsterInstance, asset: str, partition: str) -> str:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization.partition == partition
    return event.asset_materialization.tags["dagster/data_version"]


def check_results(result) -> dict[str, bool]:  # noqa: ANN001
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_definitions_load() -> None:
    from pipelines.definitions import defs

    code_location = defs()  # what `dagster dev` loads (built when called, not at import)
    dg.Definitions.validate_loadable(code_location)
    keys = {spec.key.to_user_string() for spec in code_location.resolve_all_asset_specs()}
    assert set(ASSET_NAMES) <= keys


def test_dagster_cli_validates_the_workspace() -> None:
    env = {**os.environ, "DAGSTER_HOME": ""}
    env.pop("DAGSTER_HOME")
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr


def test_digits_end_to_end_with_checks_and_stable_data_version(storage, instance) -> None:
    defs = build_definitions(storage=storage)
    result = run_dataset_job(defs, instance, "digits")
    assert result.success
    assert check_results(result) == {
        "split_sizes_match": True,
        "images_dtype_shape_range": True,
        "no_empty_classes": True,
        "source_checksums_recorded": True,
        "classifier_accuracy_target": True,
    }
    first_version = data_version(instance, "preprocessed_dataset", "digits")
    path = storage.layout.dataset_file("digits")
    assert first_version == __import__("gan_core.data", fromlist=["x"]).read_dataset_info(path).content_hash

    assert run_dataset_job(defs, instance, "digits").success
    # re-running an unchanged download gives the same data version, so nothing downstream becomes stale
    assert data_version(instance, "preprocessed_dataset", "digits") == first_version


def test_mnist_partition_from_local_directory_equals_idx(storage, instance, mnist_dir) -> None:
    defs = build_definitions(storage=storage, sources=DatasetSourcesResource(sources={"mnist": str(mnist_dir)}))
    # the MNIST feature classifier takes minutes on two cores: this test stops at the dataset file
    result = run_dataset_job(
        defs, instance, "mnist", asset_selection=[dg.AssetKey("raw_dataset"), dg.AssetKey("preprocessed_dataset")]
    )
    assert result.success and all(check_results(result).values())
    path = storage.layout.dataset_file("mnist")
    train = read_idx_gz(mnist_dir / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(load_split_arrays(path, "train").images[:, 0], train[:50_000])
    np.testing.assert_array_equal(load_split_arrays(path, "valid").images[:, 0], train[50_000:])
    np.testing.assert_array_equal(
        load_split_arrays(path, "test").images[:, 0], read_idx_gz(mnist_dir / "t10k-images-idx3-ubyte.gz")
    )


def test_failed_rebuild_keeps_previous_hdf5(storage, instance) -> None:
    defs = build_definitions(storage=storage)
    assert run_dataset_job(defs, instance, "digits").success
    path = storage.layout.dataset_file("digits")
    before = sha256_file(path)
    (storage.layout.raw_dir("digits") / "digits.npz").write_bytes(b"corrupted")
    result = defs.resolve_job_def("dataset_job").execute_in_process(
        partition_key="digits",
        instance=instance,
        raise_on_error=False,
        op_selection=None,
        asset_selection=[dg.AssetKey("preprocessed_dataset")],
    )
    assert not result.success
    assert sha256_file(path) == before


def test_blocking_check_fails_the_run_on_blank_images(storage, instance, tmp_path) -> None:
    folds = np.zeros((30, 5), dtype=np.int32)
    folds[:, 0] = np.arange(30) % 3 + 1
    mat = tmp_path / "TFD_48x48.mat"
    scipy.io.savemat(
        mat,
        {
            "images": np.zeros((30, 48, 48), dtype=np.uint8),
            "folds": folds,
            "labs_ex": (np.arange(30) % 7 + 1).reshape(-1, 1),
        },
    )
    defs = build_definitions(storage=storage, sources=DatasetSourcesResource(sources={"tfd": str(mat)}))
    result = run_dataset_job(defs, instance, "tfd")
    checks = check_results(result)
    assert checks["images_dtype_shape_range"] is False
    assert not result.success  # a blocking check failing with ERROR severity fails the run


def test_tfd_without_file_fails_with_instructions(storage, instance) -> None:
    defs = build_definitions(storage=storage, sources=DatasetSourcesResource())
    result = run_dataset_job(defs, instance, "tfd")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "not publicly downloadable" in failure.step_failure_data.error.cause.message


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".."])
def test_storage_paths_cannot_escape(storage, bad) -> None:
    with pytest.raises(ValueError, match="unsafe path component"):
        storage.layout.path("models", bad)
