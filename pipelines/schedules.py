"""Scheduled retraining: one `retrain_job` run per configured dataset x model partition on each tick.

Configure with GAN_PIPELINE_RETRAIN_CRON (default: Mondays 03:00) and GAN_PIPELINE_RETRAIN_PARTITIONS (comma-separated
keys such as "digits|paper_mlp,mnist|paper_mlp"; default "digits|paper_mlp"). The schedule is stopped by default:
switch it on in the UI (Automation) or with `dagster schedule start retrain_schedule`.
"""

from __future__ import annotations

import os

import dagster as dg

from pipelines.jobs import retrain_job
from pipelines.partitions import dataset_model_partitions

DEFAULT_CRON = "0 3 * * 1"
DEFAULT_PARTITIONS = "digits|paper_mlp"


def parse_partitions(text: str, setting: str = "GAN_PIPELINE_RETRAIN_PARTITIONS") -> list[str]:
    """Split and check a comma-separated list of dataset x model partition keys."""
    keys = [key.strip() for key in text.split(",") if key.strip()]
    known = set(dataset_model_partitions.get_partition_keys())
    unknown = [key for key in keys if key not in known]
    if unknown or not keys:
        raise ValueError(
            f"{setting}={text!r}: unknown or empty partition keys {unknown}; use keys like "
            f"'digits|paper_mlp' from {sorted(known)[:4]}..."
        )
    return keys


def build_retrain_schedule(cron: str, partition_keys: list[str]) -> dg.ScheduleDefinition:
    """A stopped-by-default schedule requesting a retrain run per partition; run keys include the tick's date."""

    @dg.schedule(
        name="retrain_schedule",
        cron_schedule=cron,
        job=retrain_job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Retrain {', '.join(partition_keys)} on '{cron}'; samples, Parzen and report follow by "
        "declarative automation.",
    )
    def retrain_schedule(context: dg.ScheduleEvaluationContext):  # noqa: ANN202
        tick = context.scheduled_execution_time
        stamp = tick.strftime("%Y-%m-%dT%H:%M") if tick else "manual"
        for key in partition_keys:
            yield dg.RunRequest(
                run_key=f"retrain:{key}:{stamp}", partition_key=key, tags={"gan_pipeline/trigger": "schedule"}
            )

    return retrain_schedule


retrain_schedule = build_retrain_schedule(
    os.environ.get("GAN_PIPELINE_RETRAIN_CRON", DEFAULT_CRON),
    parse_partitions(os.environ.get("GAN_PIPELINE_RETRAIN_PARTITIONS", DEFAULT_PARTITIONS)),
)
