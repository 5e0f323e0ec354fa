"""Executors other than the in-process default: dagster-celery over a Redis broker (pipelines/celery_workers.py runs
the workers). The broker and result backend are named by environment variables, read when a run starts."""

from __future__ import annotations

from dagster_celery import celery_executor

BROKER_VARIABLE = "GAN_PIPELINE_CELERY_BROKER"
BACKEND_VARIABLE = "GAN_PIPELINE_CELERY_BACKEND"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/1"

# the executor of `celery_training_job`: broker and result backend from the environment when a run starts
celery_redis_executor = celery_executor.configured(
    {
        "broker": {"env": BROKER_VARIABLE},
        "backend": {"env": BACKEND_VARIABLE},
        "config_source": {"worker_prefetch_multiplier": 1, "task_acks_late": False},
    },
    name="celery",
)
