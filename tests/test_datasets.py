"""Dataset sources, the HDF5 format, bad-input errors and atomic outputs (gan_core only, no Dagster)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from gan_core.checkpoint import load_checkpoint
from gan_core.data import DatasetFileError, load_split, load_split_arrays, read_dataset_info, write_dataset_h5
from gan_core.records import compute_or_load
from gan_core.sources import DATASETS, DatasetSourceError, build_splits, expected_archives, fetch_raw, read_raw_manifest
from gan_core.storage import atomic_output, hash_json, sha256_file
from tests.helpers import SHARED_DATA, read_idx_gz, write_idx_gz


def build_h5(name: str, raw_dir: Path, out: Path) -> str:
    manifest = fetch_raw(name, raw_dir) if name == "digits" else None
    manifest = manifest or read_raw_manifest(raw_dir)
    return write_dataset_h5(out, name, build_splits(name, raw_dir), manifest["files"], DATASETS[name].split_definition)


def test_digits_splits_are_stratified_and_scaled(tmp_path: Path) -> None:
    path = tmp_path / "digits.h5"
    build_h5("digits", tmp_path / "raw", path)
    info = read_dataset_info(path)
    assert info.split_sizes == {"train": 1197, "valid": 300, "test": 300}
    assert info.image_shape == (1, 8, 8)
    from sklearn.datasets import load_digits

    overall = np.bincount(load_digits().target, minlength=10)
    for split, size in info.split_sizes.items():
        counts = np.bincount(load_split_arrays(path, split).labels, minlength=10)
        # stratified: each class's count is its overall share of the split, to within rounding
        assert np.abs(counts - overall * size / overall.sum()).max() <= 1.5
    images = load_split(path, "train")
    assert images.dtype.is_floating_point and float(images.min()) == 0.0 and float(images.max()) == 1.0
    # splits are disjoint and together are all 1,797 scikit-learn digits
    stored = np.concatenate([load_split_arrays(path, s).images.reshape(-1, 64) for s in ("train", "valid", "test")])
    expected = np.round(load_digits().images.reshape(-1, 64) * 255 / 16).astype(np.uint8)
    assert sorted(map(bytes, stored)) == sorted(map(bytes, expected))


def test_digits_rebuild_has_identical_content_hash(tmp_path: Path) -> None:
    first = build_h5("digits", tmp_path / "raw", tmp_path / "a.h5")
    second = build_h5("digits", tmp_path / "raw2", tmp_path / "b.h5")
    assert first == second == read_dataset_info(tmp_path / "a.h5").content_hash


def test_mnist_through_http_mirror_equals_idx_pixels(tmp_path: Path, mnist_dir: Path, serve_directory) -> None:
    url = serve_directory(mnist_dir)
    manifest = fetch_raw("mnist", tmp_path / "raw", url)
    assert manifest["source"] == url and manifest["files"] == expected_archives("mnist")
    path = tmp_path / "mnist.h5"
    write_dataset_h5(path, "mnist", build_splits("mnist", tmp_path / "raw"), manifest["files"], {})
    train_idx = read_idx_gz(mnist_dir / "train-images-idx3-ubyte.gz")
    test_idx = read_idx_gz(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels_idx = read_idx_gz(mnist_dir / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(load_split_arrays(path, "train").images[:, 0], train_idx[:50_000])
    np.testing.assert_array_equal(load_split_arrays(path, "valid").images[:, 0], train_idx[50_000:])
    np.testing.assert_array_equal(load_split_arrays(path, "test").images[:, 0], test_idx)
    np.testing.assert_array_equal(load_split_arrays(path, "valid").labels, labels_idx[50_000:])
    assert read_dataset_info(path).source_checksums == expected_archives("mnist")


def test_mirror_serving_a_truncated_file_gives_checksum_error(tmp_path: Path, mnist_dir: Path, serve_directory) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_dir, mirror)
    data = (mirror / "train-labels-idx1-ubyte.gz").read_bytes()
    (mirror / "train-labels-idx1-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetSourceError, match=r"checksum mismatch for train-labels-idx1-ubyte.gz .*expected MD5"):
        fetch_raw("mnist", tmp_path / "raw", serve_directory(mirror))
    assert not (tmp_path / "raw").exists()  # nothing half-written left behind


def test_small_test_written_idx_files_through_mirror(tmp_path: Path, serve_directory) -> None:
    """The download path with files the test writes itself (no official data needed), checksums overridden."""
    from torchvision.datasets.utils import calculate_md5

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 64, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (16, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 16, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx_gz(mirror / name, array)
    overrides = {name: calculate_md5(str(mirror / name)) for name in arrays}
    manifest = fetch_raw("mnist", tmp_path / "raw", serve_directory(mirror), md5_overrides=overrides)
    assert manifest["files"] == overrides
    from torchvision.datasets import MNIST

    loaded = MNIST(str(tmp_path / "raw"), train=True, download=False)
    np.testing.assert_array_equal(loaded.data.numpy(), arrays["train-images-idx3-ubyte.gz"])
    # 64 training images cannot be cut into the paper's 50,000 / 10,000 split: a clear error, not a wrong file
    with pytest.raises(DatasetSourceError, match="has 64 images; the split definition needs more than 50000"):
        build_splits("mnist", tmp_path / "raw")
    # without the override, the official checksum rejects these files
    with pytest.raises(DatasetSourceError, match="checksum mismatch"):
        fetch_raw("mnist", tmp_path / "raw2", serve_directory(mirror))


def test_unreachable_mirror_names_the_source(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(DatasetSourceError, match=rf"could not download dataset 'mnist' from http://127.0.0.1:{port}"):
        fetch_raw("mnist", tmp_path / "raw", f"http://127.0.0.1:{port}/")


def test_local_directory_source_and_its_errors(tmp_path: Path, mnist_dir: Path) -> None:
    manifest = fetch_raw("mnist", tmp_path / "raw", str(mnist_dir))
    assert manifest["files"] == expected_archives("mnist")
    with pytest.raises(DatasetSourceError, match="lacks"):
        fetch_raw("mnist", tmp_path / "raw2", str(tmp_path))
    with pytest.raises(DatasetSourceError, match="not an http"):
        fetch_raw("mnist", tmp_path / "raw2", str(tmp_path / "does-not-exist"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(mnist_dir, corrupt)
    (corrupt / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    before = sha256_file(tmp_path / "raw" / "manifest.json")
    with pytest.raises(DatasetSourceError, match=r"checksum mismatch for .*t10k-labels-idx1-ubyte.gz"):
        fetch_raw("mnist", tmp_path / "raw", str(corrupt))
    assert sha256_file(tmp_path / "raw" / "manifest.json") == before  # the previous raw folder is intact
    assert build_splits("mnist", tmp_path / "raw")["test"].images.shape == (10_000, 1, 28, 28)


def test_recompressed_fashion_mnist_is_verified_by_its_content_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    """The shared Fashion-MNIST archives were re-compressed (other bytes than torchvision's MD5): accepted by the MD5 of
    their decompressed content, and the manifest says so; one changed pixel is refused, naming the file."""
    shared = SHARED_DATA / "fashion-mnist"
    if not (shared / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST files not found at {shared}")
    manifest = fetch_raw("fashion_mnist", tmp_path / "raw", str(shared))
    assert manifest["files"] == expected_archives("fashion_mnist")  # the official archive MD5s, as recorded
    assert all(how.startswith("decompressed content MD5") for how in manifest["verified"].values()), manifest
    assert "re-compressed" in manifest["verified"]["t10k-labels-idx1-ubyte.gz"]
    splits = build_splits("fashion_mnist", tmp_path / "raw")
    assert np.array_equal(splits["test"].images[:, 0], read_idx_gz(shared / "t10k-images-idx3-ubyte.gz"))

    changed = tmp_path / "changed"
    shutil.copytree(shared, changed)
    labels = read_idx_gz(shared / "t10k-labels-idx1-ubyte.gz").copy()
    labels[0] = (labels[0] + 1) % 10
    (changed / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    write_idx_gz(changed / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DatasetSourceError, match=r"t10k-labels-idx1-ubyte.gz: its bytes .* decompressed content"):
        fetch_raw("fashion_mnist", tmp_path / "raw", str(changed))
    assert read_raw_manifest(tmp_path / "raw") == manifest  # the previous raw folder is intact


def test_official_mnist_archives_are_verified_by_their_archive_md5(tmp_path: Path, mnist_dir: Path) -> None:
    manifest = fetch_raw("mnist", tmp_path / "raw", str(mnist_dir))
    assert set(manifest["verified"].values()) == {"archive MD5 (torchvision's)"}


def test_unknown_dataset_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetSourceError, match=r"unknown dataset 'svhn'; known datasets: \['cifar10', 'digits'"):
        fetch_raw("svhn", tmp_path / "raw")


def test_tfd_needs_a_user_supplied_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetSourceError, match="not publicly downloadable.*GAN_PIPELINE_SOURCE_TFD"):
        fetch_raw("tfd", tmp_path / "raw")
    with pytest.raises(DatasetSourceError, match="does not exist"):
        fetch_raw("tfd", tmp_path / "raw", str(tmp_path / "TFD_48x48.mat"))


def test_tfd_mat_file_splits_and_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 30
    folds = np.zeros((n, 5), dtype=np.int32)
    folds[:, 0] = np.arange(n) % 3 + 1  # 1 train, 2 valid, 3 test
    mat = tmp_path / "TFD_48x48.mat"
    scipy.io.savemat(
        mat,
        {
            "images": rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
            "folds": folds,
            "labs_ex": (np.arange(n) % 7 + 1).reshape(-1, 1),
        },
    )
    fetch_raw("tfd", tmp_path / "raw", str(mat))
    splits = build_splits("tfd", tmp_path / "raw")
    assert {k: len(v.images) for k, v in splits.items()} == {"train": 10, "valid": 10, "test": 10}
    assert splits["train"].images.shape[1:] == (1, 48, 48)

    bad_shape = tmp_path / "bad" / "TFD_48x48.mat"
    bad_shape.parent.mkdir()
    scipy.io.savemat(bad_shape, {"images": np.zeros((n, 32, 32), dtype=np.uint8), "folds": folds})
    fetch_raw("tfd", tmp_path / "raw_bad", str(bad_shape))
    with pytest.raises(DatasetSourceError, match=r"'images' has shape \(30, 32, 32\), expected N x 48 x 48"):
        build_splits("tfd", tmp_path / "raw_bad")

    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x00garbage" * 100)
    fetch_raw("tfd", tmp_path / "raw_garbage", str(garbage))
    with pytest.raises(DatasetSourceError, match=f"TFD file {garbage} is not a readable MATLAB file"):
        build_splits("tfd", tmp_path / "raw_garbage")


def test_unreadable_and_wrong_shaped_hdf5_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"definitely not hdf5")
    with pytest.raises(DatasetFileError, match=f"dataset file {garbage} is unreadable or not HDF5"):
        read_dataset_info(garbage)
    with pytest.raises(DatasetFileError, match="does not exist"):
        read_dataset_info(tmp_path / "missing.h5")
    good = tmp_path / "good.h5"
    build_h5("digits", tmp_path / "raw", good)
    wrong = tmp_path / "wrong.h5"
    shutil.copy(good, wrong)
    with h5py.File(wrong, "a") as handle:
        del handle["valid/images"]
        handle["valid"].create_dataset("images", data=np.zeros((300, 8, 8), dtype=np.uint8))
    with pytest.raises(DatasetFileError, match=r"/valid/images is uint8 \(300, 8, 8\), expected uint8 N x 1 x 8 x 8"):
        load_split(wrong, "valid")


def test_atomic_output_keeps_previous_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.bin"
    target.write_bytes(b"previous good result")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous good result"
    assert list(tmp_path.iterdir()) == [target]


def start_writer_that_hangs(target: Path) -> subprocess.Popen:
    """A real process inside `atomic_output(target)`, its temporary file written, waiting on its stdin."""
    script = f"""
        import sys
        from gan_core.storage import atomic_output
        with atomic_output({str(target)!r}) as tmp:
            tmp.write_bytes(b"half of a checkpoint")
            print(tmp, flush=True)
            sys.stdin.read()
        """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write_and_a_live_writers_is_not(
    tmp_path: Path,
) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous good result")
    killed, alive = start_writer_that_hangs(target), start_writer_that_hangs(target)
    killed_tmp, alive_tmp = Path(killed.stdout.readline().strip()), Path(alive.stdout.readline().strip())
    killed.kill()  # SIGKILL: no cleanup runs in it
    killed.wait()
    assert killed_tmp.is_file() and alive_tmp.is_file()

    with atomic_output(target) as tmp:
        tmp.write_bytes(b"new result")
    assert target.read_bytes() == b"new result"
    assert not killed_tmp.exists(), "the dead writer's temporary file should be gone"
    assert alive_tmp.read_bytes() == b"half of a checkpoint", "a live writer's temporary file must be left alone"
    alive.communicate("")  # the live writer finishes: its file replaces ours, and its temporary is gone too
    assert alive.returncode == 0 and target.read_bytes() == b"half of a checkpoint"
    assert sorted(tmp_path.iterdir()) == [target]


def test_compute_or_load_recomputes_only_for_a_new_key_a_missing_file_or_an_unreadable_record(tmp_path: Path) -> None:
    path = tmp_path / "evaluation" / "record.json"
    calls: list[int] = []
    key_a, key_b = hash_json({"input": "a"}), hash_json({"input": "b"})

    def compute() -> dict:
        calls.append(1)
        return {"value": len(calls)}

    first, cached = compute_or_load(path, {"input": "a"}, compute)
    assert (first, cached) == ({"key": key_a, "value": 1}, False)
    assert compute_or_load(path, {"input": "a"}, compute) == ({"key": key_a, "value": 1}, True) and len(calls) == 1
    assert compute_or_load(path, {"input": "b"}, compute) == ({"key": key_b, "value": 2}, False)  # other inputs
    path.write_text("{ truncated")
    logs: list[str] = []
    assert compute_or_load(path, {"input": "b"}, compute, log=logs.append) == ({"key": key_b, "value": 3}, False)
    assert logs and f"stored record {path} is unreadable" in logs[0]  # named, then computed again
    with pytest.raises(RuntimeError):  # a failing computation leaves the stored record as it was
        compute_or_load(path, {"input": "c"}, lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert compute_or_load(path, {"input": "b"}, compute) == ({"key": key_b, "value": 3}, True)
    # a record whose listed file is gone is recomputed; the record's path may carry the key
    owned = tmp_path / "owned.bin"
    owned.write_bytes(b"x")
    record, _ = compute_or_load(lambda key: tmp_path / f"r_{key}.json", {"input": "d"}, lambda: {"files": [str(owned)]})
    assert (tmp_path / f"r_{record['key']}.json").is_file()
    assert compute_or_load(lambda key: tmp_path / f"r_{key}.json", {"input": "d"}, lambda: {"files": []})[1]
    owned.unlink()
    assert not compute_or_load(lambda key: tmp_path / f"r_{key}.json", {"input": "d"}, lambda: {"files": []})[1]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"checkpoint {path} is unreadable"):
        load_checkpoint(path)
