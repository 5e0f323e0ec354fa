"""Partitions, derived from the registries: datasets (gan_core.sources.DATASETS), and dataset x model
(gan_core.models.MODELS) for everything from training on."""

import dagster as dg

from gan_core.models import MODELS
from gan_core.sources import DATASETS

dataset_partitions = dg.StaticPartitionsDefinition(list(DATASETS))
model_partitions = dg.StaticPartitionsDefinition(list(MODELS))
dataset_model_partitions = dg.MultiPartitionsDefinition({"dataset": dataset_partitions, "model": model_partitions})


def dataset_model_key(dataset: str, model: str) -> dg.MultiPartitionKey:
    """The multi-partition key of a dataset x model pair."""
    return dg.MultiPartitionKey({"dataset": dataset, "model": model})


def parse_dataset_model_key(key: str) -> tuple[str, str]:
    """(dataset, model) of a partition key string such as "digits|paper_mlp"; an unknown key lists known ones."""
    for known in dataset_model_partitions.get_partition_keys():
        if known == key:
            dimensions = known.keys_by_dimension  # type: ignore[attr-defined]
            return dimensions["dataset"], dimensions["model"]
    raise ValueError(
        f"unknown dataset x model partition {key!r}; keys look like 'digits|paper_mlp' "
        f"(datasets {list(DATASETS)}, models {list(MODELS)})"
    )
