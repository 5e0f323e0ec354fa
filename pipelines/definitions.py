"""The code location: assets, checks, jobs and resources (`dagster dev` loads this through workspace.yaml)."""

import dagster as dg

from assets import data_assets, data_checks, evaluation_assets, evaluation_checks, model_assets, model_checks
from pipelines.jobs import dataset_job, report_job, training_job
from pipelines.resources import DatasetSourcesResource, StorageResource

ASSET_MODULES = [data_assets, model_assets, evaluation_assets]
CHECK_MODULES = [data_checks, model_checks, evaluation_checks]


def build_definitions(
    storage: StorageResource | None = None, sources: DatasetSourcesResource | None = None
) -> dg.Definitions:
    """Definitions with the given resources (tests pass a temporary data directory)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[dataset_job, training_job, report_job],
        resources={
            "storage": storage or StorageResource(),
            "sources": sources or DatasetSourcesResource.from_env(),
        },
    )


defs = build_definitions()
