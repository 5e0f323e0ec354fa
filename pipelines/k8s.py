"""The code location on Kubernetes (dagster-k8s, the optional `k8s` extra: `pip install -e '.[k8s]'`).

`k8s_definitions()` adds `k8s_training_job`: the training job with `k8s_job_executor`, so each step runs in its own
pod. Steps of the `gpu` pool (training, sampling, Parzen, metrics) carry a `dagster-k8s/config` tag asking for one
`nvidia.com/gpu` (assets/common.py: GPU_STEP_TAGS). Every pod must mount the data directory at the same path, from a
ReadWriteMany volume, and see the same PostgreSQL instance (deploy/dagster.postgres.yaml); deploy/k8s/README.md has
the values for the Dagster Helm chart. Nothing here can start a cluster: the tests only load these definitions.
"""

from __future__ import annotations

import dagster as dg
from dagster_k8s import k8s_job_executor

from pipelines.definitions import defs
from pipelines.jobs import TRAINING_SELECTION

DATA_VOLUME = "gan-pipeline-data"  # a ReadWriteMany PersistentVolumeClaim holding $GAN_PIPELINE_DATA_DIR
DATA_MOUNT = "/data"

K8S_EXECUTOR_CONFIG = {
    "env_vars": [f"GAN_PIPELINE_DATA_DIR={DATA_MOUNT}", "GAN_PIPELINE_POSTGRES_URL"],
    "volumes": [{"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": DATA_VOLUME}}],
    "volume_mounts": [{"name": DATA_VOLUME, "mountPath": DATA_MOUNT}],
    "max_concurrent": 8,
}
k8s_executor = k8s_job_executor.configured(K8S_EXECUTOR_CONFIG, name="k8s")

k8s_training_job = dg.define_asset_job(
    "k8s_training_job",
    selection=TRAINING_SELECTION,
    executor_def=k8s_executor,
    description="training_job with each step in its own Kubernetes pod; GPU steps request nvidia.com/gpu: 1.",
)


def k8s_definitions() -> dg.Definitions:
    """The code location plus the Kubernetes job (point the Helm chart's user deployment at this function)."""
    return dg.Definitions.merge(defs(), dg.Definitions(jobs=[k8s_training_job]))
