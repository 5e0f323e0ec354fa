"""Every bad setting given to `gan-pipeline run` or `check` is refused at the door: before any job starts, in one line
on stderr naming the setting, what is wrong and what is allowed, with a non-zero exit and no traceback. A step that
fails later prints one line too. Each case runs `gan-pipeline` as a real process (no mocked network: this machine's
download of MNIST fails for real)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gan_core.models import MODELS
from gan_core.sources import DATASETS, expected_archives
from tests.helpers import REPO_ROOT


def gan_pipeline(tmp_path: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    """`gan-pipeline <command> <args>` with its instance and data in `tmp_path` and no dataset source configured."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "GAN_PIPELINE_DATA_DIR": str(tmp_path / "data")}
    for name in DATASETS:
        env.pop(DATASETS[name].source_variable, None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", command, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_refusal(completed: subprocess.CompletedProcess, words: list[str]) -> str:
    """Non-zero exit, at most 3 console lines, no traceback, and the last stderr line holds every one of `words`."""
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert len(output.splitlines()) <= 3 and "Traceback" not in output, output
    last = completed.stderr.strip().splitlines()[-1]
    missing = [word for word in words if word not in last]
    assert not missing, (missing, last)
    return last


DOOR_CASES = {
    "unknown dataset": (["--dataset", "nosuch"], ["--dataset", "unknown dataset 'nosuch'", *DATASETS]),
    "unknown model": (["--model", "nosuch"], ["--model", "unknown model 'nosuch'", *MODELS]),
    "malformed JSON": (
        ["--train-config", "{bad"],
        ["--train-config", "not valid JSON", "line 1 column 2 (char 1)", "Expecting property name", "'{bad'"],
    ),
    "JSON not an object": (["--train-config", "[1]"], ["--train-config", "must be a JSON object", "list"]),
    "negative learning rate": (
        ["--train-config", '{"learning_rate": -1}'],
        ["nothing was run", "gan_model config: learning_rate", "> 0 and finite", "got -1"],
    ),
    "zero epochs in JSON": (
        ["--train-config", '{"epochs": 0}'],
        ["gan_model config: epochs", "a positive integer", "got 0"],
    ),
    "NaN learning rate": (
        ["--train-config", '{"learning_rate": NaN}'],
        ["gan_model config: learning_rate", "finite number", "> 0 and finite", "got nan"],
    ),
    "infinite lr_decay": (
        ["--train-config", '{"lr_decay": Infinity}'],
        ["gan_model config: lr_decay", ">= 1 and finite", "got inf"],
    ),
    "batch larger than the training split": (
        ["--train-config", '{"batch_size": 100000}'],
        ["gan_model config: batch_size", "at most 1197", "training split of 'digits'", "got 100000"],
    ),
    "unknown setting": (
        ["--train-config", '{"lerning_rate": 0.1}'],
        ["nothing was run", "unknown setting 'lerning_rate'", "did you mean 'learning_rate'"],
    ),
    "zero samples": (["--samples", "0"], ["--samples", "must be a positive integer", "got 0"]),
    "zero epochs": (["--epochs", "0"], ["--epochs", "must be a positive integer", "got 0"]),
    "negative seed": (["--seeds", "0", "-1"], ["--seeds", "must be a non-negative integer", "got -1"]),
    "repeated seed": (["--seeds", "3", "3"], ["--seeds", "must be distinct", "[3] repeated"]),
    "negative retry back-off": (["--retry-backoff", "-1"], ["--retry-backoff", "from 0 to 3600", "got -1"]),
}


CHECK_DOOR_CASES = {
    "check: unknown model": (["--model", "nosuch"], ["--model", "unknown model 'nosuch'", *MODELS]),
    "check: negative epochs": (["--epochs", "-2"], ["--epochs", "must be a positive integer", "got -2"]),
}


@pytest.mark.slow
def test_every_bad_setting_is_refused_in_one_line_before_any_job(tmp_path: Path) -> None:
    """Each case is its own `gan-pipeline` process (`run`, and `check` for two), three at a time: each spends its
    seconds importing torch and Dagster, so running them side by side keeps the suite short."""
    cases = [("run", name, *case) for name, case in DOOR_CASES.items()]
    cases += [("check", name, *case) for name, case in CHECK_DOOR_CASES.items()]

    def refuse(case: tuple[str, str, list[str], list[str]]) -> subprocess.CompletedProcess:
        command, name, args, _ = case
        return gan_pipeline(tmp_path / name.replace(" ", "_").replace(":", ""), command, *args)

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(refuse, cases))
    for (_, name, _, words), completed in zip(cases, outcomes, strict=True):
        scratch = tmp_path / name.replace(" ", "_").replace(":", "")
        try:
            assert_one_line_refusal(completed, words)
            assert "[1/4]" not in completed.stdout and not (scratch / "home" / "logs").exists()  # no run recorded
        except AssertionError as failure:
            raise AssertionError(f"{name}: {failure}") from None


def test_a_failed_download_names_the_cause_and_the_local_source(tmp_path: Path) -> None:
    completed = gan_pipeline(tmp_path, "run", "--dataset", "mnist")  # no source set; this machine has no network
    archives = list(expected_archives("mnist"))
    last = assert_one_line_refusal(
        completed, ["step raw_dataset failed", "could not download dataset 'mnist'", "no network", *archives]
    )
    assert "GAN_PIPELINE_SOURCE_MNIST" in last and "mirror URL" in last and "urlopen error" in last, last
    assert last.endswith(".log)") and "(full log: " in last


def test_verbose_keeps_dagsters_event_lines(tmp_path: Path) -> None:
    completed = gan_pipeline(tmp_path, "run", "--dataset", "tfd", "--verbose")  # TFD has no source: raw_dataset fails
    assert completed.returncode != 0
    output = completed.stdout + completed.stderr
    assert "STEP_FAILURE" in output and "DatasetSourceError" in output
    assert completed.stderr.strip().splitlines()[-1].startswith("dataset_job: step raw_dataset failed: ")


def test_a_step_failing_at_run_time_prints_one_line_without_dagsters_stack(tmp_path: Path, digits_data: Path) -> None:
    assert digits_data == tmp_path / "data"  # where gan_pipeline() points the command: the dataset job finds it built
    completed = gan_pipeline(tmp_path, "run", "--train-config", '{"device": "nosuch", "epochs": 1}')
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "Traceback" not in output and "STEP_FAILURE" not in output and " - ERROR - " not in output, output
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    last = completed.stderr.strip()
    assert last.startswith("training_job: step gan_model failed: ValueError: device 'nosuch'"), last
    assert "(full log: " in last and "[2/4]" in completed.stdout
