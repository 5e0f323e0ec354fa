"""Small helpers shared by the asset modules."""

import dagster as dg


def dataset_and_model(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    """(dataset, model) of a dataset x model partition."""
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys["dataset"], keys["model"]
