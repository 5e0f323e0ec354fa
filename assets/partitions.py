"""Partitions: datasets (from gan_core.sources.DATASETS), and dataset x experiment for everything from training on.

The experiment dimension is a Dagster dynamic partition set, "experiments", held by the instance: an experiment added
at run time (`gan-pipeline experiment add`, `gan-pipeline sweep`) is a partition at once, in the UI and to the
schedules, without reloading the code location, and it survives a restart of the code location or the webserver
because the instance stores it. The registry (gan_core.experiments, in the data root) stays the source of truth;
`register_experiments` adds its names to an instance, which `gan-pipeline run`/`sweep`/`experiment add` do before they
launch and the `experiment_partitions` sensor does for a `dagster dev` deployment. The cost: a fresh instance has no
experiment partitions until one of these has run (a run on an unregistered key is refused by Dagster).

Keys read "<dataset>|<experiment>" (Dagster sorts the dimensions by name); a built-in experiment is named after its
model entry, so "digits|paper_mlp" is the key it always was.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from gan_core.experiments import NAME_PATTERN, NAME_RULE
from gan_core.sources import DATASETS

EXPERIMENT_PARTITIONS_NAME = "experiments"
dataset_partitions = dg.StaticPartitionsDefinition(list(DATASETS))
experiment_partitions = dg.DynamicPartitionsDefinition(name=EXPERIMENT_PARTITIONS_NAME)
dataset_experiment_partitions = dg.MultiPartitionsDefinition(
    {"dataset": dataset_partitions, "experiment": experiment_partitions}
)


def dataset_experiment_key(dataset: str, experiment: str) -> dg.MultiPartitionKey:
    """The multi-partition key of a dataset x experiment pair."""
    return dg.MultiPartitionKey({"dataset": dataset, "experiment": experiment})


def register_experiments(instance: dg.DagsterInstance, names: Iterable[str]) -> list[str]:
    """Add the experiments not yet in `instance`'s "experiments" partitions; return those added."""
    known = set(instance.get_dynamic_partitions(EXPERIMENT_PARTITIONS_NAME))
    new = [name for name in dict.fromkeys(names) if name not in known]
    if new:
        instance.add_dynamic_partitions(EXPERIMENT_PARTITIONS_NAME, new)
    return new


def parse_dataset_experiment_key(key: str, experiments: Iterable[str] | None = None) -> tuple[str, str]:
    """(dataset, experiment) of a partition key string such as "digits|paper_mlp"; an unknown dataset, or an
    experiment not in `experiments` (where given; else one that cannot be a name), is refused naming what is known."""
    dataset, separator, experiment = key.partition("|")
    known = list(experiments) if experiments is not None else []
    allowed = experiment in known if experiments is not None else bool(NAME_PATTERN.fullmatch(experiment))
    if not separator or dataset not in DATASETS or not allowed:
        shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        raise ValueError(
            f"unknown dataset x experiment partition {key!r}; keys look like 'digits|paper_mlp' "
            f"(datasets {list(DATASETS)}; experiments {shown or NAME_RULE})"
        )
    return dataset, experiment
