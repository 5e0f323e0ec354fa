"""The code location: assets, checks, jobs, schedules, sensors and resources (`dagster dev` and `dg` load `defs`
through workspace.yaml and pyproject.toml)."""

import dagster as dg

from assets import (
    data_assets,
    data_checks,
    evaluation_assets,
    evaluation_checks,
    inference_assets,
    metrics_assets,
    model_assets,
    model_checks,
    serving_assets,
)
from assets.resources import DatasetSourcesResource, StorageResource
from pipelines.jobs import (
    celery_training_job,
    dataset_job,
    inference_job,
    promotion_job,
    report_job,
    retrain_job,
    training_job,
)
from pipelines.recovery import recover_dead_runs_sensor
from pipelines.schedules import build_retrain_schedule
from pipelines.sensors import evaluation_follows_training, experiment_partitions, retrain_on_data_change

ASSET_MODULES = [data_assets, model_assets, evaluation_assets, inference_assets, metrics_assets, serving_assets]
CHECK_MODULES = [data_checks, model_checks, evaluation_checks, inference_assets, metrics_assets, serving_assets]


def build_definitions(
    storage: StorageResource | None = None, sources: DatasetSourcesResource | None = None
) -> dg.Definitions:
    """Definitions with the given resources (tests pass a temporary data directory); the retrain schedule's cron
    ($GAN_PIPELINE_RETRAIN_CRON) is read now."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[dataset_job, training_job, inference_job, retrain_job, promotion_job, report_job, celery_training_job],
        schedules=[build_retrain_schedule()],
        sensors=[evaluation_follows_training, retrain_on_data_change, recover_dead_runs_sensor, experiment_partitions],
        resources={
            "storage": storage or StorageResource(),
            "sources": sources or DatasetSourcesResource(),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, built when a Dagster tool loads it (or a caller calls it), not when this module is imported:
    nothing here reads the environment or builds a schedule at import."""
    return build_definitions()
