"""The instance on PostgreSQL (deploy/dagster.postgres.yaml) against a real server on 127.0.0.1: the digits graph,
a schedule tick and the `gpu` pool limit."""

from __future__ import annotations

import datetime as dt
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
