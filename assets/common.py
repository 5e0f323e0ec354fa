"""Helpers shared by the asset modules: partition keys, the per-seed compute-or-load loop, check results."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from assets.configs import validate_run_config
from gan_core.checks import CheckOutcome
from gan_core.layout import ArtifactLayout, compute_or_load
from pipelines.partitions import dataset_model_partitions
from pipelines.resources import StorageResource

Item = TypeVar("Item")
# Materialise once dependencies update, but never from data that failed a blocking check: eager() alone does not wait
# for upstream blocking checks (a model that diverged, samples outside [0, 1] would flow on to Parzen and the report).
# On Kubernetes (dagster-k8s's k8s_job_executor or K8sRunLauncher) each step of the `gpu` pool asks for one GPU.
GPU_STEP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "16Gi"}}
        },
        "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"}},
    }
}
AFTER_PASSING_UPSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def partition_asset(
    *,
    deps: list[Any],
    code_version: str,
    group_name: str,
    description: str | None = None,
    kinds: set[str] | None = None,
    pool: str | None = "gpu",
    automated: bool = True,
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """`@dg.asset` for a dataset x model asset: partitioned, in the `gpu` pool unless told otherwise, and (when
    `automated`) materialised by declarative automation once its dependencies are updated. The description is the
    decorated function's docstring unless given."""
    return dg.asset(
        partitions_def=dataset_model_partitions,
        deps=deps,
        code_version=code_version,
        automation_condition=AFTER_PASSING_UPSTREAM if automated else None,
        pool=pool,
        op_tags=GPU_STEP_TAGS if pool == "gpu" else None,
        group_name=group_name,
        kinds=kinds,
        description=description,
    )


def begin(context: dg.AssetExecutionContext, storage: StorageResource) -> tuple[str, str, ArtifactLayout]:
    """Check the whole run's config, then (dataset, model, layout) of this dataset x model partition."""
    validate_run_config(context)
    return (*dataset_and_model(context), storage.layout)


def run_holder(context: dg.AssetExecutionContext) -> str:
    """How a waiting process names this run when it finds a result locked."""
    partition = f" ({context.partition_key})" if context.has_partition_key else ""
    return f"Dagster run {context.run.run_id}{partition}"


def dataset_and_model(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    """(dataset, model) of a dataset x model partition."""
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys["dataset"], keys["model"]


def compute_or_load_each(
    context: dg.AssetExecutionContext,
    items: Iterable[Item],
    record_path: Callable[[Item, str], Path],
    key_parts: Callable[[Item], dict[str, Any]],
    compute: Callable[[Item], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    """For each upstream item (a seed's config, trained run or samples): the record stored under the hash of its
    `key_parts`, or `compute(item)` stored there. Each record gains `cached`; one log line per item."""
    records = []
    for item in items:
        record, cached = compute_or_load(
            lambda key, item=item: record_path(item, key),
            key_parts(item),
            lambda item=item: compute(item),
            log=context.log.info,
            holder=run_holder(context),
        )
        records.append({**record, "cached": cached})
        context.log.info(f"seed {record['seed']}: {describe(record)} ({'cached' if cached else 'computed'})")
    return records


def check_result(
    outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """A Dagster check result from a gan_core outcome."""
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={
            key: dg.MetadataValue.json(value) if isinstance(value, list | dict) else value
            for key, value in outcome.metadata.items()
        },
    )
