"""How `gan_model` trains a partition's seeds: the one choice between S seeds in one loop (gan_core.train.train_seeds:
stacked as one batched model on CUDA, in turn elsewhere), one seed at a time in this process, or one seed at a time as
a torchrun job of N ranks through Dagster Pipes. Each stores a run record
per seed with the same fields (gan_core.train.RunSummary, plus the seed, identity, weights hash and config)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import torch
from dagster._core.errors import DagsterPipesExecutionError  # raised by PipesSubprocessClient; not exported

from assets.common import cancel_run, compute_or_load_each, final_failure, run_holder
from assets.configs import GanTrainingConfig
from gan_core.batched import stacks_seeds
from gan_core.checkpoint import TrainingInterrupted, checkpoint_weights_hash
from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.data import DatasetInfo, load_split, load_split_arrays
from gan_core.devices import resolve_device
from gan_core.experiments import Experiment
from gan_core.layout import ArtifactLayout, torchrun_files
from gan_core.models import get_model_spec
from gan_core.records import compute_or_load
from gan_core.runs import RunSummary, TrainingDiverged
from gan_core.signals import stop_on_signals
from gan_core.sources import get_dataset_spec
from gan_core.storage import hash_json, write_json_atomic
from gan_core.train import loop_mismatch, train_seeds

TRAIN_CODE_VERSION = "2"  # 2: output-bias clip 1e-7 as pylearn2; bf16 autocast also on the CPU


class TrainingInputs(NamedTuple):
    """What training reads of a dataset: the training images, their labels and class count (a conditional or
    semi-supervised model), and the validation images (the validation monitor's, for the runs that set
    monitor_every)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int
    valid: torch.Tensor | None


def train_partition(
    context: dg.AssetExecutionContext,
    settings: GanTrainingConfig,
    options: RuntimeOptions,
    layout: ArtifactLayout,
    info: DatasetInfo,
    dataset: str,
    experiment: Experiment,
    sweep_mates: Sequence[Experiment] = (),
) -> list[dict[str, Any]]:
    """The run record of every seed of `experiment` under this run's `settings` (stored, or trained and stored now)
    on `dataset`'s file (`info`): with `batch_seeds` the seeds not stored yet train in one loop, otherwise one at a
    time (in process or by torchrun, per `settings`). With `batch_seeds`, the unstored seeds of `sweep_mates` (the
    other points of the experiment's sweep) that can share that loop (gan_core.train.loop_mismatch) train in it too,
    each into its own experiment's directory with its record stored, so a sweep's P points x S seeds cost one loop
    and the other points' partitions find their runs stored. A seed of this experiment that diverges fails the step
    once every other run is stored."""
    torchrun = settings.launcher.value == "torchrun"
    num_classes = get_dataset_spec(dataset).num_classes
    spec = get_model_spec(experiment.model)
    reads_labels = spec.conditional or spec.semi_supervised  # only these models read the labels
    labels = torch.from_numpy(load_split_arrays(info.path, "train").labels) if reads_labels else None
    train_configs = settings.train_configs(dataset, experiment)
    monitored = any(config.monitor_every for config in train_configs)
    if monitored and torchrun:
        raise final_failure(
            context,
            "gan_model config: monitor_every (the validation monitor) runs in process; set launcher: in_process or "
            "monitor_every: 0",
            "bad settings",
        )
    if spec.semi_supervised and torchrun:
        raise final_failure(
            context,
            f"gan_model config: launcher: torchrun does not train the semi-supervised model {experiment.model!r}; "
            "set launcher: in_process",
            "bad settings",
        )
    valid = load_split(info.path, "valid")  # the validation monitor's images (a sweep mate in the loop may monitor)
    training_data = TrainingInputs(load_split(info.path, "train"), labels, num_classes if reads_labels else 0, valid)
    Pending = tuple[str, TrainConfig]  # (experiment name, one seed's config)

    def identity_parts(train_config: TrainConfig) -> dict:
        parts = {"train": train_config.identity(), "data": info.content_hash, "code": TRAIN_CODE_VERSION}
        if torchrun:  # per-rank noise: N ranks train other weights than one process
            parts["ranks"] = settings.nproc_per_node
        return parts

    def run_dir(name: str, train_config: TrainConfig) -> Path:
        return layout.run_dir(dataset, name, hash_json(identity_parts(train_config)))

    def unstored(name: str, train_configs: list[TrainConfig]) -> list[Pending]:
        return [
            (name, c) for c in train_configs if not layout.run_record(dataset, name, run_dir(name, c).name).is_file()
        ]

    trained: dict[Pending, dict] = {}  # runs trained in process below: their runs' fields
    diverged: dict[Pending, TrainingDiverged] = {}
    mates: list[Pending] = []
    if not torchrun:  # the seeds not stored yet, in one loop (batch_seeds) or one by one
        pending = unstored(experiment.name, train_configs)
        if settings.batch_seeds and pending:
            for mate in sweep_mates:
                mates += [
                    p
                    for p in unstored(mate.name, settings.train_configs(dataset, mate))
                    if loop_mismatch([p[1], pending[0][1]]) is None
                ]
            if mates:
                context.log.info(f"sweep {experiment.sweep}: {len(mates)} runs of its other points train in this loop")
        for group in ([pending + mates] if settings.batch_seeds else [[p] for p in pending]) if pending else []:
            done, failed = train_in_process(
                context, [c for _, c in group], [run_dir(*p) for p in group], options, training_data
            )
            trained.update({group[i]: fields for i, fields in done.items()})
            diverged.update({group[i]: error for i, error in failed.items()})

    def record(name: str, train_config: TrainConfig) -> dict:
        """The run record of one seed of an experiment: trained above, or trained now."""
        seed, pending = train_config.seed, (name, train_config)
        if pending not in trained and torchrun:
            trained[pending] = train_with_torchrun(
                context, train_config, info.path, run_dir(*pending), options, settings.nproc_per_node, num_classes
            )
        elif pending not in trained:  # its record was there a moment ago and is gone: train it now
            done, failed = train_in_process(context, [train_config], [run_dir(*pending)], options, training_data)
            if failed:
                raise final_failure(context, str(failed[0]), "training diverged; it would diverge again")
            trained[pending] = done[0]
        fields = trained[pending]
        return {
            "seed": seed,
            "identity": run_dir(*pending).name,
            **fields,
            "weights_hash": checkpoint_weights_hash(fields["checkpoint"]),
            "config": train_config.to_dict(),
            "files": [fields["checkpoint"]],
        }

    for name, train_config in mates:  # the sweep's other points trained here: their records, for their partitions
        if (name, train_config) in trained:
            compute_or_load(
                lambda key, name=name: layout.run_record(dataset, name, key),
                identity_parts(train_config),
                lambda name=name, train_config=train_config: record(name, train_config),
                log=context.log.info,
                holder=run_holder(context),
            )
    runs = compute_or_load_each(
        context,
        [c for c in train_configs if (experiment.name, c) not in diverged],
        lambda train_config, key: layout.run_record(dataset, experiment.name, key),
        identity_parts,
        lambda train_config: record(experiment.name, train_config),
        lambda run: f"checkpoint {run['checkpoint']}",
    )
    own_diverged = {c.seed: error for (name, c), error in diverged.items() if name == experiment.name}
    if own_diverged:
        others = " (the other seeds' runs are stored)" if len(own_diverged) < len(train_configs) else ""
        raise final_failure(
            context,
            f"seed(s) {sorted(own_diverged)} diverged{others}: " + "; ".join(map(str, own_diverged.values())),
            "training diverged; it would diverge again",
        )
    return runs


@contextlib.contextmanager
def _cancel_on_stop(context: dg.AssetExecutionContext) -> Iterator[Callable[[], bool]]:
    """Yield the stop flag training polls. A termination (the UI, SIGTERM or Ctrl-C to the CLI) makes training write
    a checkpoint and raise TrainingInterrupted; this turns that into a canceled run."""
    with stop_on_signals() as stop_requested:
        try:
            yield stop_requested
        except TrainingInterrupted as stopped:
            context.log.warning(str(stopped))
            raise cancel_run(context, "stopped by a signal during training") from None


def train_in_process(
    context: dg.AssetExecutionContext,
    configs: list[TrainConfig],
    run_dirs: list[Path],
    options: RuntimeOptions,
    training_data: TrainingInputs,
) -> tuple[dict[int, dict[str, Any]], dict[int, TrainingDiverged]]:
    """gan_core.train.train_seeds here, for one run or several in one loop: ({position in `configs`: the fields of
    its trained run}, {position: the error of a run that diverged}; a divergence is not retried, it would diverge
    again) on `training_data`. A termination finishes the step, writes a checkpoint and
    cancels the run."""
    seeds = [config.seed for config in configs]
    if len(seeds) == 1:
        context.log.info(f"seed {seeds[0]}: training into {run_dirs[0]}")
    else:
        how = "stacked" if stacks_seeds(configs, options, resolve_device(options.device)) else "in turn"
        if len({replace(config, seed=0) for config in configs}) == 1:  # one configuration's seeds
            context.log.info(f"seeds {seeds}: training as one batched model ({how}; gan_model config batch_seeds)")
        else:  # a sweep's points
            context.log.info(f"{len(seeds)} runs (seeds {seeds}) in one loop ({how}; gan_model config batch_seeds)")
    data = training_data
    with _cancel_on_stop(context) as stop_requested:
        options = replace(options, stop_requested=stop_requested)
        outcomes = train_seeds(
            configs, data.images, run_dirs, options, context.log.info, data.labels, data.num_classes, data.valid
        )
    trained, diverged = {}, {}
    for position, outcome in enumerate(outcomes):
        if isinstance(outcome, TrainingDiverged):
            context.log.error(str(outcome))
            diverged[position] = outcome
        else:
            trained[position] = dict(outcome.summary())
    return trained, diverged


def train_with_torchrun(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    dataset_file: Path,
    run_dir: Path,
    options: RuntimeOptions,
    nproc: int,
    num_classes: int = 0,
) -> dict[str, Any]:
    """A DDP run of `nproc` ranks (assets/ddp_worker.py) as an external process through Dagster Pipes: rank 0's
    log lines arrive in the Dagster log and its closing message carries the result. A failed rank fails the step
    with that rank's exit code, signal and error in the log; torchrun stops the other ranks."""
    files = torchrun_files(run_dir)
    files.failures.unlink(missing_ok=True)
    write_json_atomic(
        files.settings,
        {
            "config": config.to_dict(),
            "dataset_file": str(dataset_file),
            "run_dir": str(run_dir),
            "options": options.portable(),
            "num_classes": num_classes,
        },
    )
    command = [sys.executable, "-m", "assets.ddp_worker", "launch", str(nproc), str(files.settings)]
    command += [str(files.failures), str(files.logs)]
    context.log.info(f"torchrun with {nproc} ranks: {' '.join(command)}")
    try:
        invocation = dg.PipesSubprocessClient(env={"OMP_NUM_THREADS": "1"}).run(command=command, context=context)
    except DagsterPipesExecutionError as error:  # torchrun exited non-zero
        described = describe_rank_failures(files.failures)
        for line in described:
            context.log.error(line)
        # retried like a killed process: a rank lost to a signal or to memory resumes from the checkpoint
        raise dg.Failure(f"torchrun training failed: {'; '.join(described) or error}") from error
    (message,) = [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "checkpoint" in m][-1:]
    return {key: message[key] for key in RunSummary.__annotations__}


def describe_rank_failures(failures_file: Path) -> list[str]:
    """One line per failed rank from the launcher's record, the first failure first: exit code or signal, and the
    error it raised (the message torchrun's `@record` captured, without the call stack)."""
    if not failures_file.is_file():
        return []
    lines = []
    for failure in json.loads(failures_file.read_text()):
        how = f"killed by {failure['signal']}" if failure["signal"] else f"exit code {failure['exitcode']}"
        error = failure["error"] if failure["error"] and failure["error"] != "<NONE>" else ""
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            error = json.loads(error)["message"]
        error = error.encode("utf-8", "replace").decode("utf-8")  # torch's messages can hold lone surrogates
        cause = " (the first failure)" if failure.get("first") else ""
        lines.append(f"rank {failure['rank']} failed{cause} ({how}){': ' + error if error else ''}")
    return lines
