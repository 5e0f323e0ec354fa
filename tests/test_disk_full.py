"""A full disk (issue 28, item 3): the data directory on a real small tmpfs, mounted by the test (mounting needs
root, which CI has). A step whose write finds no space fails with one line naming the file, the bytes it needs and
the bytes free; every earlier file stays as it was and no temporary file is left; once there is space the same job
finishes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from assets.partitions import dataset_experiment_key
from gan_core.storage import DiskFullError, atomic_output
from pipelines.cli import _failure_line
from tests.helpers import digits_graph

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


def mount_tmpfs(path, size: str) -> None:  # noqa: ANN001
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def digests(root) -> dict:  # noqa: ANN001
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_write_that_does_not_fit_is_refused_before_writing_and_one_that_runs_out_leaves_nothing(tmp_path) -> None:
    small = tmp_path / "small"
    mount_tmpfs(small, "1m")
    try:
        kept = small / "kept.bin"
        kept.write_bytes(b"x" * 1000)
        refused = pytest.raises(DiskFullError, match=r"^no space left for .*big\.bin: it needs 2,000,000 bytes and ")
        with refused, atomic_output(small / "big.bin", size=2_000_000):
            raise AssertionError("not reached: the size is refused before the block runs")
        ran_out = pytest.raises(DiskFullError, match=r"it needs more than [\d,]+ bytes and [\d,]+ bytes are free")
        with ran_out, atomic_output(small / "big.bin") as tmp:
            tmp.write_bytes(b"y" * 2_000_000)  # the real ENOSPC of a real write
        assert sorted(p.name for p in small.iterdir()) == ["kept.bin"] and kept.read_bytes() == b"x" * 1000
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_training_on_a_full_disk_fails_in_one_line_and_finishes_once_there_is_space(
    digits_data_template, tmp_path
) -> None:
    small = tmp_path / "small"
    mount_tmpfs(small, "8m")  # the digits data (0.5 MB) fit, a paper_mlp checkpoint (23 MB) does not
    try:
        data = small / "data"
        shutil.copytree(digits_data_template, data)
        with digits_graph(data) as (_, defs, instance):
            before = digests(data)
            job = defs.resolve_job_def("retrain_job")
            key = dataset_experiment_key("digits", "paper_mlp")
            run_config = {"ops": {"gan_model": {"config": {"epochs": 1}}}}
            result = job.execute_in_process(
                partition_key=key, instance=instance, run_config=run_config, raise_on_error=False
            )
            assert not result.success
            line = _failure_line(result, instance, "retrain_job", "the log", [])
            assert "\n" not in line
            assert line.startswith(
                "retrain_job: step gan_model failed: gan_core.storage.DiskFullError: no space left for "
            )
            assert "checkpoint.pt: it needs 2" in line and "bytes are free there; free some space and run again" in line
            after = digests(data)
            assert {p: after[p] for p in before if p in after} == before  # what was there is as it was
            assert not [p for p in data.rglob("*") if p.name.endswith(".tmp")]
            subprocess.run(["mount", "-o", "remount,size=96m", str(small)], check=True)
            again = job.execute_in_process(partition_key=key, instance=instance, run_config=run_config)
            assert again.success
    finally:
        subprocess.run(["umount", str(small)], check=True)
