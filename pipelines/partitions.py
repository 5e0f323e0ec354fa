"""Partitions: datasets, and dataset x model for everything from training on."""

import dagster as dg

DATASET_KEYS = ["digits", "mnist", "fashion_mnist", "cifar10", "tfd"]
MODEL_KEYS = ["paper_mlp", "dcgan", "paper_mlp_large"]

dataset_partitions = dg.StaticPartitionsDefinition(DATASET_KEYS)
model_partitions = dg.StaticPartitionsDefinition(MODEL_KEYS)
dataset_model_partitions = dg.MultiPartitionsDefinition({"dataset": dataset_partitions, "model": model_partitions})


def dataset_model_key(dataset: str, model: str) -> str:
    """The multi-partition key string Dagster uses ("<dataset>|<model>": dimensions sorted by name)."""
    return dg.MultiPartitionKey({"dataset": dataset, "model": model})
