"""Operations: the retraining schedule, the data-change sensor, declarative automation, the GPU pool, config errors."""

import datetime as dt

import dagster as dg
import pytest
import yaml

from assets.common import NOT_RETRIED_TAG, may_pass_on_retry
from assets.data_assets import preprocessed_dataset
from assets.evaluation_assets import evaluation_report, parzen_bandwidth, parzen_log_likelihood
from assets.model_assets import gan_model, generated_samples
from assets.partitions import dataset_experiment_key
from assets.resources import REPO_ROOT, StorageResource
from pipelines.definitions import build_definitions
from pipelines.jobs import retrain_job
from pipelines.schedules import build_retrain_schedule, parse_partitions
from pipelines.sensors import build_data_change_sensor
from tests.helpers import materialize_dataset

FAST = {
    "ops": {
        "gan_model": {"config": {"epochs": 2, "dataset_recipe": False}},
        "generated_samples": {"config": {"count": 500}},
    }
}


def evaluate(schedule: dg.ScheduleDefinition, tick: dt.datetime, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """One tick of `schedule` against `instance` (holding the built-in experiment partitions: the `instance`
    fixture). The daemon's instance reaches the partitions through its instance ref; a test instance is handed to
    Dagster's partition loading."""
    repository = dg.Definitions(
        jobs=[retrain_job], schedules=[schedule], assets=[gan_model], resources={"storage": StorageResource()}
    ).get_repository_def()
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=repository)
        return list(schedule.evaluate_tick(context).run_requests)


def test_schedule_requests_one_idempotent_run_per_partition(instance) -> None:
    schedule = build_retrain_schedule("0 3 * * 1", ["digits|paper_mlp", "mnist|dcgan"])
    tick = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
    first = evaluate(schedule, tick, instance)
    again = evaluate(schedule, tick, instance)
    assert [r.partition_key for r in first] == ["digits|paper_mlp", "mnist|dcgan"]
    assert [r.run_key for r in first] == [
        "retrain:digits|paper_mlp:2026-11-23T03:00",
        "retrain:mnist|dcgan:2026-11-23T03:00",
    ]
    assert [r.run_key for r in again] == [r.run_key for r in first]  # the same tick asks for the same runs
    later = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)
    next_week = evaluate(schedule, later, instance)
    assert {r.run_key for r in next_week}.isdisjoint({r.run_key for r in first})
    assert schedule.job_name == "retrain_job" and schedule.cron_schedule == "0 3 * * 1"
    assert build_retrain_schedule().default_status == dg.DefaultScheduleStatus.STOPPED


def test_schedule_partitions_setting_is_checked() -> None:
    assert parse_partitions(" digits|paper_mlp , mnist|dcgan") == ["digits|paper_mlp", "mnist|dcgan"]
    with pytest.raises(ValueError, match=r"GAN_PIPELINE_RETRAIN_PARTITIONS='svhn\|gan'.*\['svhn\|gan'\]"):
        parse_partitions("svhn|gan")


def test_data_change_sensor_retrains_only_on_a_new_data_version(storage, instance) -> None:
    defs = build_definitions(storage=storage)
    materialize_dataset(defs, instance)
    sensor = build_data_change_sensor(["digits|paper_mlp", "digits|dcgan", "mnist|paper_mlp"])
    repository = dg.Definitions(
        jobs=[retrain_job], sensors=[sensor], assets=[gan_model], resources={"storage": storage}
    ).get_repository_def()

    def tick(cursor: str | None):  # noqa: ANN202
        context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository)
        with dg.partition_loading_context(dynamic_partitions_store=instance):  # as `evaluate` above says
            return sensor.evaluate_tick(context)

    first = tick(None)
    assert list(first.run_requests) == []  # first sighting records the version, no retrain
    same = tick(first.cursor)
    assert list(same.run_requests) == []
    # an unchanged re-materialisation keeps the data version: still nothing
    materialize_dataset(defs, instance)
    unchanged = tick(first.cursor)
    assert list(unchanged.run_requests) == []
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=preprocessed_dataset.key, partition="digits", tags={"dagster/data_version": "f" * 64}
        )
    )
    changed = tick(first.cursor)
    requests = list(changed.run_requests)
    assert [r.partition_key for r in requests] == ["digits|paper_mlp", "digits|dcgan"]
    assert all(r.run_key.endswith(":" + "f" * 16) for r in requests)


def test_downstream_follows_training_by_declarative_automation(storage, instance) -> None:
    defs = build_definitions(storage=storage)
    key = dataset_experiment_key("digits", "paper_mlp")
    assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="digits", instance=instance).success
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing trained yet: nothing to follow
    assert (
        defs.resolve_job_def("retrain_job")
        .execute_in_process(
            partition_key=key, instance=instance, run_config={"ops": {"gan_model": {"config": {"epochs": 2}}}}
        )
        .success
    )
    after_training = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert after_training.get_requested_partitions(generated_samples.key) == {key}
    assert after_training.get_num_requested(evaluation_report.key) == 0
    job = defs.resolve_job_def("training_job")
    assert job.execute_in_process(partition_key=key, instance=instance, run_config=FAST).success
    after_eval = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_training.cursor)
    assert after_eval.get_num_requested(evaluation_report.key) == 1


def test_gpu_steps_share_a_pool_limited_to_one(tmp_path) -> None:
    assert {a.op.pool for a in (gan_model, generated_samples, parzen_bandwidth, parzen_log_likelihood)} == {"gpu"}
    settings = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert settings["concurrency"]["pools"]["default_limit"] == 1
    (tmp_path / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    instance = dg.DagsterInstance.from_config(str(tmp_path))  # how Dagster reads $DAGSTER_HOME/dagster.yaml
    try:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    finally:
        instance.dispose()


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ({"gan_model": {"config": {"learning_rate": -0.1}}}, "learning_rate\n  Input should be greater than 0"),
        ({"gan_model": {"config": {"batch_size": 0}}}, "batch_size\n  Input should be greater than 0"),
        ({"gan_model": {"config": {"d_steps": 2}}}, "update='simultaneous' needs d_steps=1"),
        (
            {"parzen_bandwidth": {"config": {"sigmas": []}}},
            "parzen_bandwidth config: sigmas: List should have at least 1",
        ),
        (
            {"generated_samples": {"config": {"count": 0}}},
            "generated_samples config: count: Input should be greater than 0",
        ),
    ],
)
def test_config_errors_fail_before_training(storage, instance, ops, message) -> None:
    defs = build_definitions(storage=storage)
    materialize_dataset(defs, instance)
    result = defs.resolve_job_def("training_job").execute_in_process(
        partition_key=dataset_experiment_key("digits", "paper_mlp"),
        instance=instance,
        raise_on_error=False,
        run_config={"ops": ops},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error  # a setting refused by TrainConfig is a Failure; a type error is chained
    assert failure.step_key == "gan_model" and message in (error.cause or error).message
    assert not list(storage.layout.path("models").glob("*/*/*/checkpoint.pt"))  # nothing was trained
    if error.cause is None:  # refused by the asset's own check (a type error fails in Dagster, before the asset)
        assert instance.get_run_by_id(result.run_id).tags.get(NOT_RETRIED_TAG) == "bad settings"


@pytest.mark.parametrize(("field", "value"), [("loss", "non_saturting"), ("optimizer", "sgd"), ("noise", "normal")])
def test_unknown_enumerated_setting_is_rejected_before_the_run_starts(storage, instance, field, value) -> None:
    defs = build_definitions(storage=storage)
    with pytest.raises(dg.DagsterInvalidConfigError, match=f"config:{field} not in enum type .* got {value}"):
        defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("digits", "paper_mlp"),
            instance=instance,
            run_config={"ops": {"gan_model": {"config": {field: value}}}},
        )
    assert not instance.get_runs()  # rejected before a run was created


def test_missing_dataset_file_fails_before_training(storage, instance) -> None:
    defs = build_definitions(storage=storage)
    result = defs.resolve_job_def("retrain_job").execute_in_process(
        partition_key=dataset_experiment_key("mnist", "paper_mlp"), instance=instance, raise_on_error=False
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        f"dataset file {storage.layout.dataset_file('mnist')} does not exist"
        in failure.step_failure_data.error.cause.message
    )


def test_a_failure_is_retried_for_a_lost_server_or_memory_only_and_a_looping_chain_ends() -> None:
    """`may_pass_on_retry` and the CLI's `unreachable_server` read the whole chain of an error (its causes and the
    errors it was raised while handling), each exception once: a chain that loops back on itself ends."""
    import sqlalchemy.exc

    from gan_core.errors import error_chain
    from pipelines.retries import unreachable_server

    first, second = KeyError("a"), ValueError("b")
    second.__cause__, first.__cause__ = first, second  # a loop
    assert list(error_chain(second)) == [second, first]
    assert not may_pass_on_retry(second) and unreachable_server(second) is None

    database = sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
    try:
        try:
            raise database
        except sqlalchemy.exc.OperationalError:
            raise RuntimeError("the step's own error, raised while the database was away") from None
    except RuntimeError as suppressed:
        assert not may_pass_on_retry(suppressed)  # `from None`: the database error is not its story
    try:
        try:
            raise database
        except sqlalchemy.exc.OperationalError:
            raise RuntimeError("storing the event failed")  # noqa: B904 (the context is the point)
    except RuntimeError as during:
        assert may_pass_on_retry(during)
        assert unreachable_server(during) == "the Dagster instance's database (PostgreSQL/SQLite)"
    assert may_pass_on_retry(RuntimeError("step")) is False
    out_of_memory = RuntimeError("step")
    out_of_memory.__cause__ = MemoryError()
    assert may_pass_on_retry(out_of_memory)
