"""Unattended operation with real processes and real signals: a killed CLI run does not wedge the instance and its
training resumes; SIGTERM cancels cleanly; two processes never train into one directory; failed blocking checks stop
automation and keep a partition out of the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import torch

from assets.partitions import dataset_experiment_key
from pipelines.definitions import build_definitions
from tests.helpers import (
    REPO_ROOT,
    latest_samples_hash,
    materialize_dataset,
    register_builtin_experiments,
    uninterrupted_samples_hash,
)

EPOCHS = 30
# the paper's settings (not digits' recipe): the test compares with default_train_config without a dataset
TRAIN = {"epochs": EPOCHS, "checkpoint_every": 1, "dataset_recipe": False}


SAMPLES = 150_000  # enough that sampling (about 6 s here) and the Parzen search (about 2 s) are still running when
# the signal sent on the first line each logs arrives (the line reaches the test within milliseconds)


def cli(home: Path, data: Path, *args: str, **popen) -> subprocess.Popen:  # noqa: ANN003
    env = {**os.environ, "DAGSTER_HOME": str(home), "GAN_PIPELINE_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pipelines.cli", "run", "--dataset", "digits", "--samples", str(SAMPLES)]
    command += ["--train-config", json.dumps(TRAIN), "--verbose", *args]  # --verbose: the per-epoch log lines
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def read_until(process: subprocess.Popen, marker: str, timeout: float = 300) -> str:
    """Read the process's output line by line until a line contains `marker`."""
    seen, deadline = [], time.monotonic() + timeout
    for line in process.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if marker in line:
            return "".join(seen)
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s:\n{''.join(seen[-40:])}"
    raise AssertionError(f"process ended before {marker!r}:\n{''.join(seen[-40:])}")


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def instance_at(home: Path) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.from_config(str(home))
    register_builtin_experiments(instance)
    return instance


def gpu_slots_held(home: Path) -> list:
    with instance_at(home) as instance:
        return instance.event_log_storage.get_concurrency_info("gpu").claimed_slots


def half_written_files(data: Path) -> list[Path]:
    """Temporary files of atomic writes (gan_core.storage.atomic_output) left in the data directory."""
    return list(data.rglob("*.tmp"))


def terminate_at(process: subprocess.Popen, marker: str) -> tuple[str, float]:
    """Send SIGTERM as soon as the output shows `marker`; (everything printed, seconds from the signal to the exit)."""
    seen = read_until(process, marker)
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    rest = finish(process, timeout=120)
    return seen + rest, time.monotonic() - sent


def training_statuses(home: Path) -> list[str]:
    with instance_at(home) as instance:
        return [run.status.value for run in instance.get_runs() if run.job_name == "training_job"][::-1]


@pytest.mark.slow
def test_sigterm_in_any_step_and_sigkill_then_reruns_resume_to_the_uninterrupted_result(digits_data, tmp_path) -> None:
    home, data = tmp_path / "home", digits_data  # the digits dataset and classifier, built once per pytest run

    # 1. SIGTERM during training: the step finishes, writes a checkpoint, the run is canceled and its slot freed
    first = cli(home, data)
    read_until(first, f"epoch 8/{EPOCHS}")
    first.send_signal(signal.SIGTERM)
    output = finish(first, timeout=120)
    assert first.returncode != 0 and "was canceled" in output, output[-3000:]
    assert "training stopped on request" in output
    checkpoint = next(data.glob("models/digits/paper_mlp/*/checkpoint.pt"))
    assert torch.load(checkpoint, weights_only=True)["epoch"] >= 8
    assert training_statuses(home) == ["CANCELED"]
    assert not gpu_slots_held(home)

    # 2. SIGKILL: no handler runs; the run stays STARTED and keeps its gpu slot
    second = cli(home, data)
    resumed = read_until(second, f"epoch 16/{EPOCHS}")
    assert "resuming from" in resumed and "its process is gone" not in resumed
    second.kill()
    second.wait()
    assert gpu_slots_held(home), "the killed run should still hold its pool slot"

    # 3. the next command recovers the instance and resumes training; SIGTERM during sampling cancels it at once
    third = cli(home, data)
    output, seconds = terminate_at(third, f"seed 0: drawing {SAMPLES} samples")
    assert "its process is gone" in output and "marked failed and its pool slots freed" in output
    resumed_lines = [line for line in output.splitlines() if "resuming from" in line]
    assert resumed_lines and f"/{EPOCHS}" in resumed_lines[0], output[-4000:]
    assert third.returncode != 0 and "was canceled" in output, output[-3000:]
    assert "generated_samples: stopped by SIGTERM; nothing of it was stored" in output, output[-3000:]
    assert training_statuses(home) == ["CANCELED", "FAILURE", "CANCELED"]
    assert not gpu_slots_held(home) and not half_written_files(data)
    assert not list(data.glob("samples/digits/paper_mlp/*.h5"))
    print(f"SIGTERM during sampling: the command ended {seconds:.1f} s after the signal")

    # 4. training is found stored, sampling is redone; SIGTERM during the Parzen search cancels the run
    fourth = cli(home, data)
    output, seconds = terminate_at(fourth, "seed 0: trying")
    assert fourth.returncode != 0 and "was canceled" in output, output[-3000:]
    assert "parzen_bandwidth: stopped by SIGTERM; nothing of it was stored" in output, output[-3000:]
    assert training_statuses(home)[-1] == "CANCELED"
    assert not gpu_slots_held(home) and not half_written_files(data)
    assert not list(data.glob("evaluation/digits/paper_mlp/bandwidth*.json"))
    print(f"SIGTERM during the Parzen search: the command ended {seconds:.1f} s after the signal")

    # 5. the last command finds training and samples stored and ends where an uninterrupted run ends
    started = time.monotonic()
    fifth = cli(home, data)
    output = finish(fifth)
    seconds = time.monotonic() - started
    assert fifth.returncode == 0, output[-4000:]
    assert "resuming from" not in output and "retry" not in output
    assert training_statuses(home) == ["CANCELED", "FAILURE", "CANCELED", "CANCELED", "SUCCESS"]
    assert not gpu_slots_held(home) and not half_written_files(data)
    assert latest_samples_hash(data) == uninterrupted_samples_hash(data, EPOCHS, SAMPLES)
    print(f"the run after four interruptions finished in {seconds:.1f} s")


@pytest.mark.slow
def test_two_processes_on_one_partition_train_once(digits_data, tmp_path) -> None:
    """Two instances (as on two machines) share one data directory: one trains, the other waits and finds it cached."""
    data = digits_data  # the digits dataset, built once per pytest run
    script = (
        "import json, sys, dagster as dg\n"
        "from pipelines.definitions import build_definitions\n"
        "from assets.resources import StorageResource\n"
        "defs = build_definitions(storage=StorageResource(root_dir=sys.argv[1]))\n"
        "from tests.helpers import register_builtin_experiments\n"
        "with dg.instance_for_test() as instance:\n"
        "    register_builtin_experiments(instance)\n"
        "    result = defs.resolve_job_def('retrain_job').execute_in_process(partition_key='digits|paper_mlp',"
        " instance=instance, run_config={'ops': {'gan_model': {'config': {'epochs': 40, 'dataset_recipe': False}}}})\n"
        "    meta = result.asset_materializations_for_node('gan_model')[0].metadata\n"
        "    found = {'cached': meta['cached'].value, 'checkpoint': meta['checkpoints'].value[0]}\n"
        "    print('RESULT', json.dumps(found))\n"
    )

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(data), *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    processes = [start(), start()]
    outputs = [finish(process) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs[0][-2000:] + outputs[1][-2000:]
    results = [json.loads(out.split("RESULT ", 1)[1]) for out in outputs]
    assert sorted(result["cached"] for result in results) == [False, True]
    waiter = outputs[[result["cached"] for result in results].index(True)]
    assert "waiting for" in waiter and "holds it" in waiter and "Dagster run" in waiter
    assert results[0]["checkpoint"] == results[1]["checkpoint"]

    from gan_core.checkpoint import checkpoint_weights_hash
    from gan_core.config import RuntimeOptions, default_train_config
    from gan_core.data import load_split
    from gan_core.train import train_gan

    single = train_gan(
        default_train_config("paper_mlp", epochs=40),
        load_split(data / "datasets" / "digits.h5", "train"),
        tmp_path / "single",
        RuntimeOptions(device="cpu", progress=False),
    )
    assert checkpoint_weights_hash(results[0]["checkpoint"]) == checkpoint_weights_hash(single.checkpoint_path)


FAST = {
    "ops": {
        "gan_model": {"config": {"epochs": 3}},
        "generated_samples": {"config": {"count": 1000}},
        "parzen_bandwidth": {"config": {"n_valid": 300}},
    }
}


def test_failed_blocking_check_stops_automation_and_the_report_leaves_the_partition_out(
    digits_storage, instance
) -> None:
    storage = digits_storage
    defs = build_definitions(storage=storage)
    materialize_dataset(defs, instance, with_classifier=True)
    key = dataset_experiment_key("digits", "paper_mlp")
    assert (
        defs.resolve_job_def("training_job")
        .execute_in_process(partition_key=key, instance=instance, run_config=FAST)
        .success
    )
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    samples_only = [dg.AssetKey("generated_samples")]

    def resample(seed: int) -> dict[str, bool]:
        result = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=key,
            instance=instance,
            run_config={"ops": {"generated_samples": {"config": {"count": 1000, "sample_seed": seed}}}},
            asset_selection=samples_only,
            raise_on_error=False,
        )
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    # control: new samples that pass their checks are followed by Parzen, metrics and figures
    assert resample(5)["samples_finite_in_unit_range"]
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    for name in ("parzen_bandwidth", "evaluation_metrics", "paper_figures"):
        assert evaluation.get_num_requested(dg.AssetKey(name)) == 1, name
    cursor = evaluation.cursor

    # inject a failure upstream: the generator now outputs NaN, so new samples fail the blocking range check
    checkpoint = Path(storage.layout.trained_runs("digits", "paper_mlp")[0]["checkpoint"])
    state = torch.load(checkpoint, weights_only=True)
    for weights in ("generator", "generator_average"):  # sampling uses the average where one is kept
        if weights in state:
            state[weights]["output.bias"].fill_(float("nan"))
    torch.save(state, checkpoint)
    assert resample(7)["samples_finite_in_unit_range"] is False

    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    for name in ("parzen_bandwidth", "evaluation_metrics", "paper_figures"):
        assert evaluation.get_num_requested(dg.AssetKey(name)) == 0, name

    report = defs.resolve_job_def("report_job").execute_in_process(instance=instance)
    metadata = report.asset_materializations_for_node("evaluation_report")[0].metadata
    assert metadata["partitions"].value == []
    reason = metadata["left_out"].value["digits|paper_mlp"]
    assert "samples_finite_in_unit_range failed" in reason and "earlier samples" in reason
    markdown = (storage.layout.report_dir() / "report.md").read_text()
    assert "partitions left out" in markdown and "digits|paper_mlp: samples_finite_in_unit_range failed" in markdown
    assert {e.check_name: e.passed for e in report.get_asset_check_evaluations()}["report_covers_partitions"]
