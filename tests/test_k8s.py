"""The Kubernetes code location loads (dagster-k8s, the `k8s` extra): nothing here can start a cluster."""

from __future__ import annotations

import json

import dagster as dg
import pytest

pytest.importorskip("dagster_k8s")


def test_definitions_load_with_the_k8s_executor_and_gpu_requests() -> None:
    from pipelines.k8s import DATA_MOUNT, K8S_EXECUTOR_CONFIG, k8s_definitions

    defs = k8s_definitions()
    job = defs.resolve_job_def("k8s_training_job")
    assert job.executor_def.name == "k8s"
    requests = {
        node.name: node.definition.tags.get("dagster-k8s/config")
        for node in job.graph.nodes
        if node.name in ("gan_model", "generated_samples", "parzen_bandwidth", "parzen_log_likelihood")
    }
    assert len(requests) == 4
    for tags in map(json.loads, requests.values()):  # Dagster stores tag values as JSON strings
        assert tags["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"training_job", "k8s_training_job"}
    # the executor's config is valid for dagster-k8s, and mounts the data volume in every step pod
    assert dg.validate_run_config(job, {}) is not None
    assert K8S_EXECUTOR_CONFIG["volume_mounts"] == [{"name": "gan-pipeline-data", "mountPath": DATA_MOUNT}]
    defs.get_repository_def().load_all_definitions()
