"""Asset checks on the Parzen evaluation and the report."""

import dagster as dg

from assets.common import check_result, dataset_and_experiment, final_if_failed
from assets.evaluation_assets import (
    evaluation_report,
    parzen_bandwidth,
    parzen_log_likelihood,
)
from assets.partitions import dataset_experiment_partitions
from assets.resources import StorageResource
from gan_core import checks


@dg.asset_check(asset=parzen_bandwidth, description="Warns when the chosen sigma sits at an end of the grid.")
def sigma_inside_grid(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    runs = storage.layout.sigma_searches(dataset, experiment)
    problems = []
    for run in runs:
        grid = [s for s, _ in run["valid_mean_by_sigma"]]
        if run["sigma"] == min(grid):
            problems.append(
                f"seed {run['seed']}: sigma {run['sigma']:.4g} is the smallest in the grid; extend it downwards"
            )
        elif run["sigma"] == max(grid):
            problems.append(
                f"seed {run['seed']}: sigma {run['sigma']:.4g} is the largest in the grid; extend it upwards"
            )
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or "chosen sigma is inside the grid",
        metadata={"sigmas": dg.MetadataValue.json([run["sigma"] for run in runs])},
    )


@dg.asset_check(asset=parzen_log_likelihood, blocking=True, description="The test log-likelihood is finite.")
@final_if_failed
def log_likelihood_finite(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    return check_result(checks.check_log_likelihoods(storage.layout.parzen_scores(dataset, experiment)))


@dg.asset_check(
    asset=evaluation_report,
    description="The report has a row for every partition materialised before it read the stored results, or lists "
    "it as left out with the reason (a partition another run evaluates meanwhile is the next report's).",
)
def report_covers_partitions(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    metadata = context.instance.get_latest_materialization_event(evaluation_report.key).asset_materialization.metadata
    read_at = metadata["results_read_at"].value if "results_read_at" in metadata else None
    evaluated: set[str | None] = set()
    records_filter = dg.AssetRecordsFilter(asset_key=parzen_log_likelihood.key, before_timestamp=read_at)
    cursor = None
    while True:  # Dagster returns at most 10,000 records a call
        page = context.instance.fetch_materializations(records_filter, limit=10_000, cursor=cursor)
        evaluated |= {record.partition_key for record in page.records}
        if not page.has_more:
            break
        cursor = page.cursor
    known = set(dataset_experiment_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    expected = sorted(str(key) for key in evaluated if key in known)
    reported, left_out = set(metadata["partitions"].value), metadata["left_out"].value
    missing = [key for key in expected if key not in reported and key not in left_out]
    return dg.AssetCheckResult(
        passed=not missing,
        description=f"missing partitions: {missing}"
        if missing
        else f"all {len(expected)} materialised partitions reported ({len(left_out)} left out: {sorted(left_out)})",
        metadata={"materialised": dg.MetadataValue.json(expected), "reported": dg.MetadataValue.json(sorted(reported))},
    )
