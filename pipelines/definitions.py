"""The code location: assets, checks, jobs and resources (`dagster dev` loads this through workspace.yaml)."""

import dagster as dg

from assets import (
    data_assets,
    data_checks,
    evaluation_assets,
    evaluation_checks,
    metrics_assets,
    model_assets,
    model_checks,
)
from pipelines.jobs import celery_training_job, dataset_job, report_job, retrain_job, training_job
from pipelines.recovery import recover_dead_runs_sensor
from pipelines.resources import DatasetSourcesResource, StorageResource
from pipelines.schedules import retrain_schedule
from pipelines.sensors import evaluation_follows_training, retrain_on_data_change

ASSET_MODULES = [data_assets, model_assets, evaluation_assets, metrics_assets]
CHECK_MODULES = [data_checks, model_checks, evaluation_checks, metrics_assets]


def build_definitions(
    storage: StorageResource | None = None, sources: DatasetSourcesResource | None = None
) -> dg.Definitions:
    """Definitions with the given resources (tests pass a temporary data directory)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[dataset_job, training_job, retrain_job, report_job, celery_training_job],
        schedules=[retrain_schedule],
        sensors=[evaluation_follows_training, retrain_on_data_change, recover_dead_runs_sensor],
        resources={
            "storage": storage or StorageResource(),
            "sources": sources or DatasetSourcesResource(),
        },
    )


defs = build_definitions()
