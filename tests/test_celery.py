"""Steps on two real Celery worker processes with a real Redis broker on 127.0.0.1 (dagster-celery): both workers
execute steps, every result lands in the shared data directory, the `gpu` pool limit holds across workers; a worker
process killed mid-step fails its run with a clear message and `gan-pipeline`'s retry resumes training; a broker
restarted mid-run (every queue and result lost: no persistence) is survived or retried."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import REPO_ROOT

POOL_STEPS = {"gan_model", "generated_samples", "parzen_bandwidth", "parzen_log_likelihood", "evaluation_metrics"}


def environment(home: Path, data: Path, redis) -> dict[str, str]:  # noqa: ANN001
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GAN_PIPELINE_DATA_DIR": str(data),
        "GAN_PIPELINE_CELERY_BROKER": redis.url(0),
        "GAN_PIPELINE_CELERY_BACKEND": redis.url(1),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }


@contextlib.contextmanager
def workers(env: dict[str, str], names: list[str], log_dir: Path):  # noqa: ANN201
    """Celery worker processes (one task at a time each) running this project's Celery app; stopped by their pids."""
    processes = []
    for name in names:
        log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 (closed below)
        command = [sys.executable, "-m", "celery", "-A", "pipelines.celery_workers", "worker", "-Q", "dagster"]
        command += ["--concurrency", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"]
        processes.append((subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        deadline = time.monotonic() + 120
        for (process, _), name in zip(processes, names, strict=True):
            while "ready." not in (log_dir / f"{name}.log").read_text():
                assert process.poll() is None and time.monotonic() < deadline, (log_dir / f"{name}.log").read_text()
                time.sleep(0.5)
        yield [process for process, _ in processes]
    finally:
        for process, _log in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        for process, log in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def cli_run(env: dict[str, str], model: str, epochs: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipelines.cli", "run", "--dataset", "digits", "--model", model]
    command += [
        "--executor",
        "celery",
        "--samples",
        "1000",
        "--retry-backoff",  # the default 10 s is for a server that restarts; these faults are over at once
        "2",
        "--train-config",
        json.dumps({"epochs": epochs, "dataset_recipe": False}),
    ]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_until_a_new_checkpoint(env: dict[str, str], data: Path, model: str, epochs: int) -> subprocess.Popen:
    """`cli_run`, returned once its training has written a checkpoint that was not there before."""
    pattern = f"models/digits/{model}/*/checkpoint.pt"
    before = set(data.glob(pattern))
    run = cli_run(env, model, epochs)
    deadline = time.monotonic() + 300
    while not set(data.glob(pattern)) - before:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-3000:]
        time.sleep(0.5)
    return run


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for record in instance.get_records_for_run(run_id, limit=10_000).records:
        event = record.event_log_entry
        if event.dagster_event is None or event.step_key not in POOL_STEPS:
            continue
        kind = event.dagster_event.event_type_value
        if kind == "STEP_START":
            starts[event.step_key] = event.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[event.step_key] = event.timestamp
    return {key: (starts[key], ends[key]) for key in starts if key in ends}


def celery_hosts(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    hosts = set()
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=1000).records:
        metadata = record.event_log_entry.dagster_event.event_specific_data.metadata
        if "Celery worker" in metadata:
            hosts.add(str(metadata["Celery worker"].value))
    return hosts


def pool_child(worker_pid: int) -> int:
    """The prefork pool process of a Celery worker (the one executing its task)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == worker_pid:
                    return int(entry.name)
    raise AssertionError(f"worker {worker_pid} has no pool process")


@pytest.mark.slow
def test_two_celery_workers_share_partitions_under_one_gpu_slot_and_survive_a_killed_worker(
    digits_data, tmp_path, redis
) -> None:
    home, data = tmp_path / "home", digits_data  # the digits dataset and classifier, built once per pytest run
    env = environment(home, data, redis)
    with workers(env, ["worker1", "worker2"], tmp_path) as processes:
        # 1. two partitions at once on two workers
        runs = [cli_run(env, "paper_mlp", 3), cli_run(env, "dcgan", 1)]
        outputs = [run.communicate(timeout=900)[0] for run in runs]
        assert all(run.returncode == 0 for run in runs), outputs[0][-3000:] + outputs[1][-3000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            celery_runs = [run for run in instance.get_runs() if run.job_name == "celery_training_job"]
            assert len(celery_runs) == 2 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in celery_runs)
            hosts = set().union(*(celery_hosts(instance, run.run_id) for run in celery_runs))
            assert {host.split("@")[0] for host in hosts} == {"worker1", "worker2"}, hosts
            intervals = sorted(i for run in celery_runs for i in step_intervals(instance, run.run_id).values())
            assert len(intervals) == 2 * len(POOL_STEPS)
            # the gpu pool (limit 1) held across workers and runs: no two pool steps overlapped
            assert all(end <= start for (_, end), (start, _) in zip(intervals[:-1], intervals[1:], strict=True))
        for model in ("paper_mlp", "dcgan"):
            assert list(data.glob(f"models/digits/{model}/*/checkpoint.pt"))
            assert list(data.glob(f"samples/digits/{model}/*.h5"))
            assert (data / "evaluation" / "digits" / model / "parzen.json").is_file()
            assert (data / "evaluation" / "digits" / model / "metrics.json").is_file()

        # 2. the process executing gan_model dies mid-training: the run fails clearly, the command's retry resumes it
        run = run_until_a_new_checkpoint(env, data, "paper_mlp", 12)
        for worker in processes:  # the idle worker's pool process is killed too; it holds no task
            os.kill(pool_child(worker.pid), signal.SIGKILL)
        output = run.communicate(timeout=600)[0]
        assert run.returncode == 0, output[-3000:]
        assert "gan_model" in output and "Worker exited prematurely: signal 9 (SIGKILL)" in output, output[-3000:]
        assert "retry 1 of 2 in 2 s: the run tagged gan_pipeline/attempt_id=" in output, output[-3000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            training = [run for run in instance.get_runs() if run.job_name == "celery_training_job"]  # newest first
            assert [run.status.value for run in training[:2]] == ["SUCCESS", "FAILURE"]
            assert training[0].tags["gan_pipeline/retry_of"] == training[1].run_id
            records = instance.get_records_for_run(training[0].run_id, limit=10_000).records
        assert any("resuming from" in record.event_log_entry.user_message for record in records)

        # 3. Redis restarts while a run trains (without persistence: its queue and results are gone): the run goes on
        # or fails naming the broker, and the command's retry finishes it
        run = run_until_a_new_checkpoint(env, data, "dcgan", 3)
        redis.restart(down_seconds=2)
        output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output[-3000:]
    retried = "retry 1 of 2" in output
    assert not retried or "Redis" in output.split("retry 1 of 2")[0].rstrip().splitlines()[-1], output[-3000:]
    print(f"Redis restarted mid-run: {'retried' if retried else 'carried on'}")
