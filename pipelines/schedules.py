"""Scheduled retraining: one `retrain_job` run per configured dataset x experiment partition on each tick.

Configure with GAN_PIPELINE_RETRAIN_CRON (default: Mondays 03:00) and GAN_PIPELINE_RETRAIN_PARTITIONS (comma-separated
keys such as "digits|paper_mlp,mnist|paper_mlp"; default "digits|paper_mlp"). Both are read when a tick is evaluated,
not when the code location loads: a bad value fails that tick with a message naming the variable, and the code location
still loads. The schedule is stopped by default: switch it on in the UI (Automation) or with
`dagster schedule start retrain_schedule`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from assets.partitions import EXPERIMENT_PARTITIONS_NAME, parse_dataset_experiment_key
from gan_core.models import MODELS
from gan_core.sources import DATASETS
from pipelines.jobs import retrain_job

CRON_VARIABLE = "GAN_PIPELINE_RETRAIN_CRON"
PARTITIONS_VARIABLE = "GAN_PIPELINE_RETRAIN_PARTITIONS"
DEFAULT_CRON = "0 3 * * 1"
DEFAULT_PARTITIONS = "digits|paper_mlp"


def parse_partitions(
    text: str, setting: str = PARTITIONS_VARIABLE, experiments: Iterable[str] | None = None
) -> list[str]:
    """Split and check a comma-separated list of dataset x experiment partition keys (their experiments among
    `experiments` where given: at a tick, the instance's partitions)."""
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = []
    for key in keys:
        try:
            parse_dataset_experiment_key(key, experiments)
        except ValueError:
            unknown.append(key)
    if unknown or not keys:
        raise ValueError(
            f"{setting}={text!r}: unknown or empty partition keys {unknown}; use keys like 'digits|paper_mlp' "
            f"(datasets {list(DATASETS)}; experiments: built-in {list(MODELS)} or any `gan-pipeline experiment list` "
            "shows)"
        )
    return keys


def retrain_partitions(instance: dg.DagsterInstance | None = None) -> list[str]:
    """The partitions to retrain, from GAN_PIPELINE_RETRAIN_PARTITIONS (read now); with an instance, each must be
    one of its experiment partitions."""
    experiments = instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS_NAME) if instance is not None else None
    return parse_partitions(os.environ.get(PARTITIONS_VARIABLE, DEFAULT_PARTITIONS), experiments=experiments)


def configured_cron(cron: str | None = None) -> tuple[str, str | None]:
    """(cron to schedule, problem): a bad GAN_PIPELINE_RETRAIN_CRON keeps the default cron and reports the problem
    at each tick instead of stopping the code location from loading."""
    cron = cron or os.environ.get(CRON_VARIABLE, DEFAULT_CRON)
    if is_valid_cron_string(cron):
        return cron, None
    return DEFAULT_CRON, f"{CRON_VARIABLE}={cron!r} is not a valid cron string (e.g. '0 3 * * 1')"


def build_retrain_schedule(cron: str | None = None, partition_keys: list[str] | None = None) -> dg.ScheduleDefinition:
    """A stopped-by-default schedule requesting a retrain run per partition; run keys include the tick's date.
    Unset arguments come from the environment variables (the partitions are read at each tick)."""
    cron, cron_problem = configured_cron(cron)
    if partition_keys is not None:
        parse_partitions(",".join(partition_keys), "partition_keys")

    @dg.schedule(
        name="retrain_schedule",
        cron_schedule=cron,
        job=retrain_job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Retrain the partitions in ${PARTITIONS_VARIABLE} (default {DEFAULT_PARTITIONS}) on '{cron}'; "
        "samples, Parzen and report follow by declarative automation.",
    )
    def retrain_schedule(context: dg.ScheduleEvaluationContext):  # noqa: ANN202
        if cron_problem:
            raise ValueError(cron_problem)
        tick = context.scheduled_execution_time
        stamp = tick.strftime("%Y-%m-%dT%H:%M") if tick else "manual"
        for key in partition_keys if partition_keys is not None else retrain_partitions(context.instance):
            yield dg.RunRequest(
                run_key=f"retrain:{key}:{stamp}", partition_key=key, tags={"gan_pipeline/trigger": "schedule"}
            )

    return retrain_schedule
