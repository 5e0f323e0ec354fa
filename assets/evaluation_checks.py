"""Asset checks on the Parzen evaluation and the report."""

import math

import dagster as dg

from assets.common import dataset_and_model
from assets.evaluation_assets import (
    collect_project_results,
    evaluation_report,
    parzen_bandwidth,
    parzen_log_likelihood,
)
from pipelines.partitions import dataset_model_partitions
from pipelines.resources import StorageResource


@dg.asset_check(asset=parzen_bandwidth, description="Warns when the chosen sigma sits at an end of the grid.")
def sigma_inside_grid(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, model = dataset_and_model(context)
    runs = storage.layout.sigma_searches(dataset, model)
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
def log_likelihood_finite(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, model = dataset_and_model(context)
    runs = storage.layout.parzen_scores(dataset, model)
    values = [run["mean_log_likelihood"] for run in runs]
    ok = all(math.isfinite(v) and math.isfinite(run["standard_error"]) for v, run in zip(values, runs, strict=True))
    return dg.AssetCheckResult(
        passed=ok, description=f"mean test log-likelihoods {values}", metadata={"values": dg.MetadataValue.json(values)}
    )


@dg.asset_check(asset=evaluation_report, description="The report has a row for every materialised partition.")
def report_covers_partitions(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    materialized = context.instance.get_materialized_partitions(parzen_log_likelihood.key)
    expected = sorted(str(key) for key in materialized if key in dataset_model_partitions.get_partition_keys())
    reported = {f"{row['dataset']}|{row['model']}" for row in collect_project_results(storage.layout)}
    missing = [key for key in expected if key not in reported]
    return dg.AssetCheckResult(
        passed=not missing,
        description=f"missing partitions: {missing}"
        if missing
        else f"all {len(expected)} materialised partitions reported",
        metadata={"materialised": dg.MetadataValue.json(expected), "reported": dg.MetadataValue.json(sorted(reported))},
    )
