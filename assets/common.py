"""Helpers shared by the asset modules: partition keys, the per-seed compute-or-load loop, check results."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pandas as pd

from assets.configs import validate_run_config
from assets.partitions import dataset_experiment_partitions
from assets.resources import StorageResource
from gan_core.checks import CheckOutcome
from gan_core.errors import error_chain
from gan_core.layout import ArtifactLayout, FigureName, PartitionKind
from gan_core.metrics import METRIC_COLUMNS
from gan_core.records import compute_or_load
from gan_core.report import COLUMN_GUIDE, DECIMALS, STD
from gan_core.signals import StopRequested, raise_on_signals
from gan_core.storage import DiskFullError, atomic_output
from gan_core.tensorboard import FINAL_METRIC_PREFIX, hparams_of, write_hparams

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


# Set on a run that failed for a reason a retry cannot fix: Dagster's run-retry daemon (dagster.yaml `run_retries`)
# then leaves it, and `gan-pipeline` does not retry it either; NOT_RETRIED_TAG says why.
NO_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false"}
NOT_RETRIED_TAG = "gan_pipeline/not_retried"


def final_failure(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, message: str, why: str
) -> dg.Failure:
    """The error for a failure a retry cannot fix (`why`: bad settings, divergence, a failed blocking check): the
    run is tagged so that neither the run-retry daemon nor `gan-pipeline` retries it, and the log says so."""
    mark_not_retried(context, why)
    return dg.Failure(message, allow_retries=False)


def mark_not_retried(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, why: str) -> None:
    """Tag this run as not to be retried (see `final_failure`) and log why."""
    context.instance.add_run_tags(context.run.run_id, {**NO_RETRY_TAGS, NOT_RETRIED_TAG: why})
    context.log.info(f"this run will not be retried: {why}")


def _marked_not_retried(context: dg.AssetExecutionContext) -> bool:
    """Whether this run is already tagged not to be retried (read from the instance: `context.run` holds the tags the
    run started with, not those added since, such as `final_failure`'s)."""
    run = context.instance.get_run_by_id(context.run.run_id)
    return run is not None and NOT_RETRIED_TAG in run.tags


def cancel_run(context: dg.AssetExecutionContext, reason: str) -> dg.DagsterExecutionInterruptedError:
    """Mark this run CANCELING (unless a termination from the UI did already), so that Dagster ends it CANCELED, not
    FAILED, and no retry follows; return the interruption to raise."""
    run = context.instance.get_run_by_id(context.run.run_id)
    if run is not None and run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
        context.instance.report_run_canceling(run, reason)
    return dg.DagsterExecutionInterruptedError(reason)


AssetCompute = TypeVar("AssetCompute", bound=Callable[..., Any])


def final_if_failed(check: AssetCompute) -> AssetCompute:
    """A blocking check whose failure is final: the run it fails is not retried (the same data would fail again)."""

    @functools.wraps(check)
    def wrapped(context: dg.AssetCheckExecutionContext, *args: Any, **kwargs: Any) -> dg.AssetCheckResult:
        result = check(context, *args, **kwargs)
        if not result.passed:
            mark_not_retried(context, f"blocking check {check.__name__} failed: {result.description}")
        return result

    return wrapped  # type: ignore[return-value]


SERVER_ERRORS = {  # the top module of an exception that says a server was unreachable: the server it means
    "sqlalchemy": "the Dagster instance's database (PostgreSQL/SQLite)",
    "psycopg2": "the Dagster instance's database (PostgreSQL)",
    "redis": "the Celery broker (Redis)",
    "kombu": "the Celery broker (Redis)",
    "celery": "the Celery broker (Redis)",
}


def lost_server(error: BaseException) -> str | None:
    """The server (SERVER_ERRORS) that `error` or one of its causes says was unreachable (a connection or
    operational error of its client library), or None."""
    for seen in error_chain(error):
        module, name = type(seen).__module__.split(".")[0], type(seen).__name__
        if module in SERVER_ERRORS and ("Operational" in name or "Connection" in name):
            return SERVER_ERRORS[module]
    return None


def may_pass_on_retry(error: BaseException) -> bool:
    """Whether a retry may succeed where `error` failed a step: a server away (the instance's database, the broker),
    memory the machine or the GPU lacked, a lost worker. Not the inputs, the settings or the code: those fail again."""
    if lost_server(error) is not None:
        return True
    # torch's OutOfMemoryError: the GPU's memory
    return any(
        isinstance(seen, MemoryError) or type(seen).__name__ == "OutOfMemoryError" for seen in error_chain(error)
    )


def guarded_step(compute: AssetCompute) -> AssetCompute:
    """An asset body run as unattended operation needs it:
    - a termination (SIGTERM, Ctrl-C, the UI's SIGINT) stops it at once and cancels the run: every file is written
      atomically, so nothing half-written stays and the next run redoes only this step (training instead finishes
      its step and writes a checkpoint first: assets/training.py);
    - an error a retry cannot fix (`may_pass_on_retry`: bad input or settings, a full disk, a bug) tags the run so
      that no retry follows (`mark_not_retried`); any other failure, and a killed process, is retried."""

    @functools.wraps(compute)
    def wrapped(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
        try:
            with raise_on_signals():
                return compute(context, *args, **kwargs)
        except StopRequested as stop:
            context.log.warning(f"{context.asset_key.to_user_string()}: stopped by {stop}; nothing of it was stored")
            raise cancel_run(context, f"stopped by {stop} during {context.asset_key.to_user_string()}") from None
        except DiskFullError:
            mark_not_retried(context, "the disk is full; free space, then run it again")
            raise
        except Exception as error:
            if not may_pass_on_retry(error) and not _marked_not_retried(context):
                mark_not_retried(context, f"{type(error).__name__} would happen again")
            raise

    return wrapped  # type: ignore[return-value]


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
    """`@dg.asset` for a dataset x experiment asset: partitioned, in the `gpu` pool unless told otherwise, and (when
    `automated`) materialised by declarative automation once its dependencies are updated. The description is the
    decorated function's docstring unless given. Its body is a `guarded_step`."""
    asset = dg.asset(
        partitions_def=dataset_experiment_partitions,
        deps=deps,
        code_version=code_version,
        automation_condition=AFTER_PASSING_UPSTREAM if automated else None,
        pool=pool,
        op_tags=GPU_STEP_TAGS if pool == "gpu" else None,
        group_name=group_name,
        kinds=kinds,
        description=description,
    )
    return lambda compute: asset(guarded_step(compute))


def checked_partition(context: dg.AssetExecutionContext, storage: StorageResource) -> tuple[str, str, ArtifactLayout]:
    """Check the whole run's config, then (dataset, experiment, layout) of this dataset x experiment partition."""
    dataset, experiment = dataset_and_experiment(context)
    try:
        validate_run_config(context, storage.experiments.get(experiment))
    except ValueError as refused:
        raise final_failure(context, str(refused), "bad settings") from None
    return dataset, experiment, storage.layout


def progress_bars() -> bool | None:
    """Progress bars for long steps: always when `GAN_PIPELINE_PROGRESS_BARS=1` (what `gan-pipeline run` sets when its
    console is a terminal: Dagster captures a step's stderr into a file, so tqdm cannot see the terminal itself), never
    when `0`, else tqdm's own choice (a terminal or not)."""
    setting = os.environ.get("GAN_PIPELINE_PROGRESS_BARS", "")
    return {"1": True, "0": False}.get(setting)


def run_holder(context: dg.AssetExecutionContext) -> str:
    """How a waiting process names this run when it finds a result locked."""
    partition = f" ({context.partition_key})" if context.has_partition_key else ""
    return f"Dagster run {context.run.run_id}{partition}"


def dataset_and_experiment(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    """(dataset, experiment) of a dataset x experiment partition."""
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys["dataset"], keys["experiment"]


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


def table_metadata(table: pd.DataFrame) -> dg.TableMetadataValue:
    """A DataFrame as a Dagster table with a schema (sortable in the UI): numbers stay numbers (rounded as the report
    shows them), missing values are blank, and each known column carries its one-line explanation."""
    unused_spreads = [c for c in table.columns if c.endswith(STD) and table[c].isna().all()]  # one seed each
    table = table.drop(columns=[c for c in ("mean", "error") if c in table.columns] + unused_spreads)
    columns, kinds = [], {}
    for name, dtype in table.dtypes.items():
        kinds[name] = (
            "bool"
            if pd.api.types.is_bool_dtype(dtype)
            else "int"
            if pd.api.types.is_integer_dtype(dtype)
            else "float"
            if pd.api.types.is_float_dtype(dtype)
            else "string"
        )
        base = str(name).removesuffix(STD)
        guide = COLUMN_GUIDE.get(str(name)) or (
            f"Standard deviation of {base} over the seeds (blank for one seed)." if base != name else None
        )
        columns.append(dg.TableColumn(str(name), kinds[name], description=guide))

    def cell(name: str, value: Any) -> Any:
        if pd.isna(value):
            return None
        if kinds[name] == "bool":
            return bool(value)
        if kinds[name] == "int":
            return int(value)
        if kinds[name] == "float":
            return round(float(value), DECIMALS.get(name.removesuffix(STD), 4))
        return str(value)

    records = [dg.TableRecord({n: cell(n, v) for n, v in row.items()}) for row in table.to_dict("records")]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def store_figure(layout: ArtifactLayout, dataset: str, experiment: str, name: FigureName, png: bytes) -> str:
    """Write one of a partition's figures (the report embeds it); return its path."""
    path = layout.figure(dataset, experiment, name)
    with atomic_output(path) as tmp:
        tmp.write_bytes(png)
    return str(path)


# each seed's stored final results shown as TensorBoard hparams metrics: index kind -> {record field: metric name}
HPARAM_METRICS: dict[PartitionKind, dict[str, str]] = {
    "metrics": {name: name for name in METRIC_COLUMNS},
    "parzen": {"mean_log_likelihood": "parzen_log_likelihood"},
}


def publish_hparams(storage: StorageResource, dataset: str, experiment: str) -> None:
    """Each seed's settings and final metrics (what of evaluation_metrics and parzen_log_likelihood is stored now) as
    TensorBoard hparams in its run directory, so TensorBoard's HParams view compares the runs of a sweep."""
    layout = storage.layout
    final: dict[int, dict[str, float]] = {}
    for kind, names in HPARAM_METRICS.items():
        if not layout.partition_index(kind, dataset, experiment).is_file():
            continue
        for row in layout.read_partition_index(kind, dataset, experiment)["runs"]:
            values = {FINAL_METRIC_PREFIX + tag: row[field] for field, tag in names.items() if field in row}
            final.setdefault(row["seed"], {}).update(
                {tag: float(value) for tag, value in values.items() if isinstance(value, int | float)}
            )
    definition = storage.experiments.get(experiment)
    varied = [*definition.settings, *definition.swept]
    for run in layout.trained_runs(dataset, experiment):
        hparams = hparams_of(run["config"], experiment, definition.sweep, varied)
        run_dir = layout.run_dir(dataset, experiment, run["identity"])
        write_hparams(run_dir, hparams, final.get(run["seed"], {}), run["epochs"])
