"""Steps on several worker processes: dagster-celery with a Redis broker.

A run of `celery_training_job` (the training job's assets on the Celery executor) is orchestrated by the process that
launches it (`gan-pipeline run --executor celery`, or the run launcher under `dagster dev`); each step is a Celery task
that any worker picks up. The `gpu` pool limit holds across workers, because the orchestrator claims the pool slot in
the shared instance before it sends a pool step out. Every worker needs the same code, the same instance
($DAGSTER_HOME: SQLite on one machine, PostgreSQL across machines) and the same data directory at the same path.

    export GAN_PIPELINE_CELERY_BROKER=redis://127.0.0.1:6379/0 GAN_PIPELINE_CELERY_BACKEND=redis://127.0.0.1:6379/1
    .venv/bin/celery -A pipelines.celery_workers worker -Q dagster --concurrency 1 -n gpu0@%h   # one per GPU / core
"""

from __future__ import annotations

import functools
import os

import dagster as dg
from celery import Celery
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from pipelines.definitions import defs
from pipelines.executors import BACKEND_VARIABLE, BROKER_VARIABLE, DEFAULT_BACKEND, DEFAULT_BROKER

JOB_NAME = "celery_training_job"


@functools.cache
def worker_app() -> Celery:
    """The Celery app the workers run, with its `execute_plan` task; the broker and backend are read from the
    environment now (once per process), not when this module is imported."""
    app = make_app(
        CeleryExecutor.for_cli(
            broker=os.environ.get(BROKER_VARIABLE, DEFAULT_BROKER),
            backend=os.environ.get(BACKEND_VARIABLE, DEFAULT_BACKEND),
            config_source={"worker_prefetch_multiplier": 1},
        ).app_args()
    )
    create_task(app)
    return app


def __getattr__(name: str) -> Celery:
    """`celery -A pipelines.celery_workers worker` looks up this module's `app`: it is built on that lookup."""
    if name == "app":
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def celery_training_job() -> dg.JobDefinition:
    """The job a Celery run executes, rebuilt by each worker from this module (reconstructable)."""
    return defs().resolve_job_def(JOB_NAME)


def reconstructable_celery_training_job():  # noqa: ANN201 (dagster's ReconstructableJob is not public)
    """What `dagster.execute_job` needs to hand `celery_training_job` to the workers."""
    return dg.build_reconstructable_job("pipelines.celery_workers", "celery_training_job")
