"""Sensors: declarative automation for everything downstream of training, and retraining on a data change.

Downstream assets (samples, Parzen, report) carry automation conditions (see assets/); the `evaluation_follows_training`
sensor evaluates them and is running by default, so once a `gan_model` partition lands (from the schedule, a sensor or
the UI) its samples, Parzen results and the report follow. `retrain_on_data_change` (stopped by default) requests a
retrain when a dataset's HDF5 content hash (its data version) changes. `experiment_partitions` (running by default) adds
the registry's experiments to the instance's dynamic partitions.
"""

from __future__ import annotations

import json

import dagster as dg

from assets.data_assets import preprocessed_dataset
from assets.evaluation_assets import evaluation_report, parzen_bandwidth, parzen_log_likelihood
from assets.metrics_assets import evaluation_metrics, paper_figures
from assets.model_assets import generated_samples
from assets.partitions import EXPERIMENT_PARTITIONS_NAME, parse_dataset_experiment_key
from assets.partitions import experiment_partitions as experiment_partitions_def
from assets.resources import StorageResource
from pipelines.jobs import retrain_job
from pipelines.schedules import retrain_partitions

evaluation_follows_training = dg.AutomationConditionSensorDefinition(
    "evaluation_follows_training",
    target=dg.AssetSelection.assets(
        generated_samples, parzen_bandwidth, parzen_log_likelihood, evaluation_metrics, paper_figures, evaluation_report
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materialises samples, Parzen results and the report after new training results.",
)


def latest_data_version(instance: dg.DagsterInstance, dataset: str) -> str | None:
    """The data version of the latest preprocessed_dataset materialisation for `dataset`, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=preprocessed_dataset.key, asset_partitions=[dataset]), limit=1
    ).records
    if not records:
        return None
    return records[0].asset_materialization.tags.get("dagster/data_version")


def build_data_change_sensor(partition_keys: list[str] | None = None) -> dg.SensorDefinition:
    """The sensor for `partition_keys`, or for $GAN_PIPELINE_RETRAIN_PARTITIONS read at each evaluation."""

    @dg.sensor(
        name="retrain_on_data_change",
        job=retrain_job,
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=60,
        description="Retrains the partitions in $GAN_PIPELINE_RETRAIN_PARTITIONS (read at each evaluation) when their "
        "dataset's HDF5 content hash changes.",
    )
    def retrain_on_data_change(context: dg.SensorEvaluationContext):  # noqa: ANN202
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        keys = partition_keys if partition_keys is not None else retrain_partitions(context.instance)
        datasets = {key: parse_dataset_experiment_key(key)[0] for key in keys}
        for dataset in sorted(set(datasets.values())):
            version = latest_data_version(context.instance, dataset)
            if version is None or seen.get(dataset) == version:
                continue
            if dataset in seen:  # a change, not the first sighting
                for key, key_dataset in datasets.items():
                    if key_dataset == dataset:
                        yield dg.RunRequest(
                            run_key=f"data:{key}:{version[:16]}",
                            partition_key=key,
                            tags={"gan_pipeline/trigger": "data_change"},
                        )
            seen[dataset] = version
        context.update_cursor(json.dumps(seen, sort_keys=True))

    return retrain_on_data_change


retrain_on_data_change = build_data_change_sensor()


@dg.sensor(
    name="experiment_partitions",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Adds every experiment of the registry (built-in, experiments.yaml, added at run time) to the "
    "instance's `experiments` partitions, so a `dagster dev` deployment shows them without a reload.",
)
def experiment_partitions(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
    names = storage.experiments.names()
    known = set(context.instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS_NAME))
    new = [name for name in names if name not in known]
    return dg.SensorResult(
        dynamic_partitions_requests=[experiment_partitions_def.build_add_request(new)] if new else [],
        skip_reason=None if new else f"all {len(names)} experiments are partitions",
    )
