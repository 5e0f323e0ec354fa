"""The instance on PostgreSQL (deploy/dagster.postgres.yaml) against a real server on 127.0.0.1: the digits graph,
a schedule tick and the `gpu` pool limit."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time

import dagster as dg

from assets.model_assets import gan_model
from pipelines.cli import run_pipeline
from pipelines.definitions import build_definitions
from pipelines.jobs import retrain_job
from pipelines.schedules import build_retrain_schedule
from tests.helpers import REPO_ROOT, register_builtin_experiments

FAST_TRAINING = {"epochs": 3, "dataset_recipe": False}
FAST_SAMPLING = {"count": 1000}


def postgres_instance(tmp_path, postgres, monkeypatch) -> dg.DagsterInstance:  # noqa: ANN001
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("GAN_PIPELINE_POSTGRES_URL", postgres.url)
    instance = dg.DagsterInstance.from_config(str(home))
    register_builtin_experiments(instance)
    return instance


def test_digits_graph_schedule_tick_and_pool_limit_on_postgres(tmp_path, postgres, storage, monkeypatch) -> None:
    instance = postgres_instance(tmp_path, postgres, monkeypatch)
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        defs = build_definitions(storage=storage)
        started = time.perf_counter()
        outcome = run_pipeline(
            "digits", "paper_mlp", FAST_TRAINING, instance=instance, defs=defs, sample_config=FAST_SAMPLING
        )
        print(f"digits graph on PostgreSQL: {time.perf_counter() - started:.1f} s")
        assert outcome["failed_checks"] == [] and outcome["report"]["report_html"].endswith("report.html")
        runs = instance.get_runs()
        assert {run.job_name for run in runs} == {"dataset_job", "training_job", "promotion_job", "report_job"}
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        assert instance.get_latest_materialization_event(dg.AssetKey("evaluation_report")) is not None

        # a schedule tick against the PostgreSQL instance, and the retrain run it asks for
        schedule = build_retrain_schedule("0 3 * * 1", ["digits|paper_mlp"])
        tick = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)
        repository = dg.Definitions(
            jobs=[retrain_job], schedules=[schedule], assets=[gan_model], resources={"storage": storage}
        ).get_repository_def()
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=repository)
        (request,) = schedule.evaluate_tick(context).run_requests
        result = defs.resolve_job_def("retrain_job").execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            run_config={"ops": {"gan_model": {"config": FAST_TRAINING}}},
        )
        assert result.success
        assert result.asset_materializations_for_node("gan_model")[0].metadata["cached"].value is True

        # the gpu pool: one slot, shared by every process of the instance
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        storage_ = instance.event_log_storage
        first = storage_.claim_concurrency_slot("gpu", "run-a", "gan_model")
        second = storage_.claim_concurrency_slot("gpu", "run-b", "gan_model")
        assert first.is_claimed and not second.is_claimed
        storage_.free_concurrency_slot_for_step("run-a", "gan_model")
        assert storage_.claim_concurrency_slot("gpu", "run-b", "gan_model").is_claimed
        assert [slot.run_id for slot in storage_.get_concurrency_info("gpu").claimed_slots] == ["run-b"]
    finally:
        instance.dispose()


def test_postgres_restarted_mid_training_the_command_carries_on_or_retries_and_finishes(
    tmp_path, postgres, digits_data, monkeypatch
) -> None:
    """PostgreSQL (the instance's runs and events) stopped for 12 s and started again while `gan-pipeline run` trains:
    the run either goes on or fails with a line naming the database, and the command's own retry finishes it."""
    import os
    import subprocess
    import sys

    from tests.test_recovery import read_until

    home, data = tmp_path / "home", digits_data  # the digits dataset and classifier, built once per pytest run
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "GAN_PIPELINE_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    env["GAN_PIPELINE_POSTGRES_URL"] = postgres.url
    monkeypatch.setenv("GAN_PIPELINE_POSTGRES_URL", postgres.url)  # for this test's own look at the instance
    train = {"epochs": 20, "checkpoint_every": 1, "dataset_recipe": False}
    command = [sys.executable, "-m", "pipelines.cli", "run", "--dataset", "digits", "--samples", "1000", "--verbose"]
    command += ["--train-config", json.dumps(train)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = read_until(process, "epoch 5/20")
    postgres.restart(down_seconds=12)  # longer than dagster-postgres retries a connection (about 6 s)
    output = seen + process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-4000:]
    retried = "retry 1 of 2" in output
    if retried:  # the line before the retry names the server
        assert "database" in output.split("retry 1 of 2")[0].rstrip().splitlines()[-1], output[-4000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        training = [run for run in instance.get_runs() if run.job_name == "training_job"]
        assert training[0].status == dg.DagsterRunStatus.SUCCESS
        assert all(run.is_finished for run in instance.get_runs())  # no run left STARTED by the outage
    print(f"PostgreSQL restarted mid-training: {'retried' if retried else 'carried on'}")
    print("\n".join(line for line in output.splitlines() if " - DEBUG - " not in line and " - INFO - " not in line))
