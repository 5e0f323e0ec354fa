"""The command line as a user meets it: a failed step is one line naming the step and the cause, plus a log file with
the full traceback; settings Dagster refuses are one line too. Each runs `gan-pipeline` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT


def gan_pipeline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "GAN_PIPELINE_DATA_DIR": str(tmp_path / "data")}
    env.pop("GAN_PIPELINE_SOURCE_TFD", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_failed_step_prints_one_line_with_the_cause_and_a_log_with_the_traceback(tmp_path) -> None:
    completed = gan_pipeline(tmp_path, "--dataset", "tfd")  # TFD cannot be downloaded and no source is set
    assert completed.returncode != 0
    assert "DEBUG" not in completed.stdout + completed.stderr and "Traceback" not in completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("dataset_job: step raw_dataset failed: ") and "GAN_PIPELINE_SOURCE_TFD" in last, last
    log_file = Path(last.rsplit("(full log: ", 1)[1].rstrip(")"))
    assert log_file.parent == tmp_path / "home" / "logs" and log_file.is_file()
    log = log_file.read_text()
    assert "STEP_FAILURE" in log and "in _fetch_tfd" in log and "DatasetSourceError" in log  # the full stack
    assert len(completed.stdout.splitlines()) <= 3, completed.stdout
    assert len((completed.stdout + completed.stderr).splitlines()) <= 3  # no Dagster event lines either


def test_refused_settings_are_one_line_and_nothing_runs(tmp_path) -> None:
    completed = gan_pipeline(tmp_path, "--train-config", '{"loss": "non_saturting"}')
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("training_job: invalid settings, nothing was run: ") and "non_saturting" in last, last
