"""Adding a dataset, a model or a loss is one registry entry: a throw-away entry of each, registered before the code
location is imported (in a subprocess, so no other test sees it), shows up in the partitions, the config's allowed
values and the checks, and goes through the Dagster graph."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.helpers import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from types import MappingProxyType

    import numpy as np
    import torch

    import gan_core.losses as losses
    import gan_core.models as models
    import gan_core.sources as sources
    from gan_core.data import SplitArrays
    from gan_core.storage import sha256_file

    def fetch(spec, raw_dir, source, md5_overrides):
        rng = np.random.default_rng(0)
        labels = np.arange(420) % spec.num_classes
        images = (rng.random((420, 1, 8, 8)) * 64 + labels[:, None, None, None] * 60).astype(np.uint8)
        np.savez(raw_dir / "tiny.npz", images=images, labels=labels)
        return {"source": "test", "files": {"tiny.npz": sha256_file(raw_dir / "tiny.npz")}, "hash": "sha256"}

    def split(spec, raw_dir, manifest):
        with np.load(raw_dir / "tiny.npz") as archive:
            images, labels = archive["images"], archive["labels"].astype(np.int64)
        cuts = {"train": slice(0, 300), "valid": slice(300, 360), "test": slice(360, 420)}
        return {name: SplitArrays(images[cut], labels[cut]) for name, cut in cuts.items()}

    def least_squares_terms(real, fake):
        loss = 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
        return losses.DiscriminatorTerms(loss, real.mean().detach(), fake.mean().detach())

    sources.DATASETS = MappingProxyType({**sources.DATASETS, "tiny": sources.DatasetSpec(
        "tiny", (1, 8, 8), 3, fetch=fetch, split=split,
        split_sizes={"train": 300, "valid": 60, "test": 60}, classifier_accuracy_target=0.5,
        recipes={"tiny_mlp": {"momentum_end": 0.6}},
    )})
    models.MODELS = MappingProxyType({**models.MODELS, "tiny_mlp": models.ModelSpec(
        "tiny_mlp", models._paper_mlp((32,), 16, 2), recipe={"learning_rate": 0.05}, batchable=True
    )})
    losses.LOSSES = MappingProxyType({**losses.LOSSES, "least_squares": losses.Loss(
        "least_squares", least_squares_terms, lambda fake: 0.5 * (fake - 1).pow(2).mean(), recipe={"batch_size": 50}
    )})

    import dagster as dg
    from assets.configs import GanTrainingConfig
    from gan_core.batched import why_not_batched
    from pipelines.definitions import build_definitions
    from assets.partitions import (
        dataset_experiment_key, dataset_experiment_partitions, dataset_partitions, register_experiments
    )
    from assets.resources import StorageResource

    storage = StorageResource(root_dir=sys.argv[1])
    defs = build_definitions(storage=storage)
    found = {
        "dataset_partition": "tiny" in dataset_partitions.get_partition_keys(),
        "builtin_experiment": storage.experiments.get("tiny_mlp").model == "tiny_mlp",
        "loss_choice": GanTrainingConfig(loss="least_squares").loss.value == "least_squares",
        "recipe": GanTrainingConfig(loss="least_squares").train_configs("tiny", "tiny_mlp")[0].to_dict(),
        "no_dataset_recipe": GanTrainingConfig(dataset_recipe=False).train_configs("tiny", "tiny_mlp")[0].to_dict(),
        # batchability is the entry's declaration, not its name
        "why_not_batched": why_not_batched(GanTrainingConfig().train_configs("tiny", "tiny_mlp")[0]),
    }
    with dg.instance_for_test() as instance:
        register_experiments(instance, storage.experiments.names())  # what gan-pipeline and the sensor do
        keys = dataset_experiment_partitions.get_partition_keys(dynamic_partitions_store=instance)
        found["model_partition"] = "tiny|tiny_mlp" in keys
        data = defs.resolve_job_def("dataset_job").execute_in_process(partition_key="tiny", instance=instance)
        found["dataset_checks"] = {e.check_name: [e.passed, e.metadata.get("target") and e.metadata["target"].value]
                                   for e in data.get_asset_check_evaluations()}
        run_config = {"ops": {
            "gan_model": {"config": {"loss": "least_squares", "epochs": 2}},
            "generated_samples": {"config": {"count": 200}},
            "parzen_bandwidth": {"config": {"n_valid": 60}},
        }}
        trained = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("tiny", "tiny_mlp"), instance=instance, run_config=run_config
        )
        found["training_success"] = trained.success
        found["training_checks"] = {e.check_name: e.passed for e in trained.get_asset_check_evaluations()}
    print("RESULT " + json.dumps(found))
    """
)


def test_one_entry_each_adds_a_dataset_a_model_and_a_loss(tmp_path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.split("RESULT ", 1)[1])
    assert found["dataset_partition"] and found["model_partition"] and found["loss_choice"]
    assert found["builtin_experiment"]  # a model entry is an experiment of its own name
    # the model's recipe, then the loss's, then the dataset's for that model, over the paper's defaults
    assert found["recipe"]["learning_rate"] == 0.05 and found["recipe"]["batch_size"] == 50
    assert found["recipe"]["optimizer"] == "paper" and found["recipe"]["momentum_end"] == 0.6
    assert found["no_dataset_recipe"]["momentum_end"] == 0.7  # dataset_recipe: false, the paper's value
    assert found["why_not_batched"] is None  # an MLP named otherwise than paper_mlp* is batched where declared
    checks = found["dataset_checks"]
    assert checks["split_sizes_match"][0] and checks["no_empty_classes"][0]
    assert checks["classifier_accuracy_target"][1] == 0.5  # the spec's target, not a default of 0
    assert found["training_success"]
    assert (
        found["training_checks"]["training_did_not_diverge"]
        and found["training_checks"]["samples_finite_in_unit_range"]
    )
    assert (tmp_path / "data" / "datasets" / "tiny.h5").is_file()
