"""The GAN training loop: k discriminator steps per generator step, the paper's SGD or Adam, checkpoint and resume,
for one run or S seeds of one configuration at once.

Read `_train` top to bottom: per epoch, each run's permutation of the training set; per step, the learning rate and
one `step` for every run (gan_core.updates' rule of each run in turn, or the seeds stacked as one model,
gan_core.batched); divergence checks, mid-epoch checkpoints and stop requests; at the epoch's end its statistics,
TensorBoard events (gan_core.tensorboard) and checkpoint. One run is S = 1. The whole training split lives on the
device as one tensor and batches are index slices of a device-side permutation (no DataLoader, no per-image Python
work). Configuration is plain values (`TrainConfig`, gan_core/config.py) saved inside every checkpoint
(gan_core/checkpoint.py); how to run (`RuntimeOptions`) is not."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gan_core.batched import StackedSeeds, stacks_seeds
from gan_core.checkpoint import Checkpoint
from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.devices import resolve_device
from gan_core.distributed import Ranks
from gan_core.layout import checkpoint_file
from gan_core.locks import exclusive
from gan_core.models import get_model_spec
from gan_core.monitor import MONITOR_KEY, ValidationMonitor
from gan_core.runs import EpochTracker, RandomStream, Run, Step, TrainingDiverged, TrainResult, interrupted
from gan_core.semi_supervised import labelled_subset, store_labelled_subset
from gan_core.tensorboard import TrainingBoard
from gan_core.updates import Players, learning_rate, make_update, paper_momentum

# what runs in one loop share: the model (and so the data it reads) and the loop's shape (steps per epoch, epochs)
LOOP_SETTINGS = ("model", "batch_size", "d_steps", "epochs", "max_train_images")


def train_gan(
    config: TrainConfig,
    train_images: torch.Tensor,
    out_dir: str | os.PathLike[str],
    options: RuntimeOptions | None = None,
    log: Callable[[str], None] | None = None,
    train_labels: torch.Tensor | None = None,
    num_classes: int = 0,
    monitor_images: torch.Tensor | None = None,
) -> TrainResult:
    """Train (or resume, or return the finished run in) `out_dir` on `train_images` (N x C x H x W in [0, 1]); a
    conditional model also needs the images' `train_labels` (0..num_classes-1) and `num_classes`; a config with
    `monitor_every` the validation images it estimates on (`monitor_images`). Raises TrainingDiverged when a loss
    turns NaN or infinite."""
    (outcome,) = train_seeds([config], train_images, [out_dir], options, log, train_labels, num_classes, monitor_images)
    if isinstance(outcome, TrainingDiverged):
        raise outcome
    return outcome


def loop_mismatch(configs: Sequence[TrainConfig]) -> tuple[str, list] | None:
    """The first of LOOP_SETTINGS in which `configs` differ, with their values sorted; None when they can train in
    one loop."""
    for name in LOOP_SETTINGS:
        if len(values := {getattr(c, name) for c in configs}) > 1:
            return name, sorted(values, key=str)
    return None


def train_seeds(
    configs: Sequence[TrainConfig],
    train_images: torch.Tensor,
    out_dirs: Sequence[str | os.PathLike[str]],
    options: RuntimeOptions | None = None,
    log: Callable[[str], None] | None = None,
    train_labels: torch.Tensor | None = None,
    num_classes: int = 0,
    monitor_images: torch.Tensor | None = None,
) -> list[TrainResult | TrainingDiverged]:
    """Train (or resume, or return the finished runs of) `configs` into `out_dirs` in one loop: seeds of one
    configuration, or the points of a sweep (they share LOOP_SETTINGS; learning rate, momentum, loss, update rule and
    every other setting may differ, each run stepping with its own). Each run keeps its own directory, lock and
    checkpoint in the format of a run alone, so resume, sampling and every later step see ordinary runs. Runs resuming
    from different points train as one group per point. Each entry of the result is that run's TrainResult, or the
    TrainingDiverged that stopped it (the others trained on). Runs with `monitor_every` estimate their validation
    log-likelihood on `monitor_images` (gan_core.monitor) and keep their best checkpoint beside the last."""
    options = options or RuntimeOptions()
    if not configs or len(set(map(str, out_dirs))) != len(configs):
        raise ValueError("train_seeds takes one or more configs, one output directory each")
    if (mismatch := loop_mismatch(configs)) is not None:
        name, values = mismatch
        raise ValueError(f"runs in one loop share `{name}`; got {values}: train them apart")
    if len(configs) > 1 and (options.on_epoch_end is not None or options.distributed is not None):
        raise ValueError("several seeds in one loop support neither on_epoch_end nor torchrun: train them one by one")
    for config in configs:
        config.validate()
        if config.monitor_every and monitor_images is None:
            raise ValueError(
                f"monitor_every={config.monitor_every} estimates on validation images: pass monitor_images (the "
                "dataset's valid split), or set monitor_every=0"
            )
    device = resolve_device(options.device)
    monitored = monitor_images is not None and any(config.monitor_every for config in configs)
    monitor = ValidationMonitor(monitor_images, device) if monitored else None
    stacked = stacks_seeds(configs, options, device)
    data = TrainingData.on_device(configs[0], train_images, train_labels, num_classes, device)
    ranks = Ranks(options.distributed, configs[0])  # no-ops in one process
    with contextlib.ExitStack() as locks:
        if ranks.is_main:  # one trainer per run directory; rank 0 holds the lock for all ranks
            for out_dir in out_dirs:
                locks.enter_context(exclusive(checkpoint_file(out_dir), options.holder, log))
        own_streams = len(configs) > 1 and not stacked
        runs = [
            _restore(config, Path(out_dir), data, options, device, ranks, log, own_streams)
            for config, out_dir in zip(configs, out_dirs, strict=True)
        ]
        for run in runs:
            if run.board is not None:
                locks.callback(run.board.close)
        groups: dict[tuple[int, int, int | None], list[Run]] = defaultdict(list)
        for run in runs:
            if run.state.epoch < run.config.epochs:
                progress = run.state.epoch_progress
                groups[run.state.epoch, run.state.step, None if progress is None else progress[2]].append(run)
        for group in groups.values():
            if stacked:
                graphed = options.use_cuda_graph(group[0].config, device)
                if graphed and log:
                    log("replaying the stacked step as a CUDA graph (RuntimeOptions.cuda_graph)")
                step: Step = StackedSeeds(group, data.images, use_cuda_graph=graphed)
            else:
                step = RunsInTurn(ranks, data.images, len(group) > 1, log)
            _train(group, data, options, step, ranks, monitor, log if ranks.is_main else None)
    return [run.outcome() for run in runs]


def _train(
    runs: list[Run],
    data: TrainingData,
    options: RuntimeOptions,
    step: Step,
    ranks: Ranks,
    monitor: ValidationMonitor | None,
    log: Callable[[str], None] | None,
) -> None:
    """Train `runs`, standing at the same point, to their last epoch or to a requested stop."""
    config, images = runs[0].config, data.images
    per_step = config.batch_size * config.d_steps
    steps_per_epoch = data.steps_per_epoch(config)
    for epoch in range(runs[0].state.epoch, config.epochs):
        live = [run for run in runs if run.error is None]
        for run in live:
            run.momentum = paper_momentum(run.config, epoch + 1) if run.config.optimizer == "paper" else None
        first = [run.start_epoch(steps_per_epoch, functools.partial(step.permutation, run, epoch)) for run in live]
        step.start_epoch(live)
        stop_now = False
        for local_step in range(first[0], steps_per_epoch):
            for run in live:  # each run's own schedule (a sweep's points differ in it)
                run.learning_rate = learning_rate(run.config, run.state.step, config.epochs * steps_per_epoch)
            step(live, slice(local_step * per_step, (local_step + 1) * per_step), local_step)
            for run in live:
                run.state.step += 1
            stop_now = options.interrupted()  # polled once per step
            mid_epoch_save = local_step + 1 < steps_per_epoch and (stop_now or live[0].checkpoint.due())
            if local_step % 100 == 99 or local_step == steps_per_epoch - 1 or mid_epoch_save:
                for run in live:
                    run.stop_if_diverged(local_step + 1, epoch, alone=len(runs) == 1)
                live = [run for run in live if run.error is None]
                if not live:
                    return
            if mid_epoch_save:
                _save(live, step, images.shape[1:], next_step=local_step + 1)
                if stop_now:
                    raise interrupted(live)
        for run in live:
            statistics = ranks.mean(run.epoch_statistics)
            run.tracker.end_epoch(epoch + 1, run.state, statistics, run.learning_rate, run.momentum)
            if options.distributed is not None:
                players = run.players
                run.state.history[-1]["rank_weights"] = ranks.weights_in_sync(players.generator, players.discriminator)
            if monitor is not None and monitor.due(run.config, epoch + 1):
                _monitor(run, monitor, step, images.shape[1:], data.num_classes, log)
            if run.board is not None:
                run.board.epoch(run.state.history[-1])
                if run.board.grid_due(epoch + 1):
                    step.write_back(run)
                    run.board.grid(epoch + 1, run.players.sampling_generator, run.players.pair.noise_dim)
        last, stop = epoch + 1 == config.epochs, options.should_stop(epoch + 1) or stop_now
        if last or stop or (epoch + 1) % options.checkpoint_every == 0 or live[0].checkpoint.due():
            _save(live, step, images.shape[1:])
        if stop_now:
            raise interrupted(live)
        if options.on_epoch_end is not None:  # one run
            step.write_back(live[0])
            sampler = live[0].players.sampling_generator
            sampler.eval()
            options.on_epoch_end(epoch + 1, sampler)
            live[0].players.generator.train()
        if stop:
            return


def _monitor(
    run: Run,
    monitor: ValidationMonitor,
    step: Step,
    image_shape: torch.Size,
    num_classes: int,
    log: Callable[[str], None] | None,
) -> None:
    """Estimate `run`'s validation log-likelihood at its epoch's end into its history, and write its best checkpoint
    when the estimate beats the one the best checkpoint holds (written before the last checkpoint: a crash in between
    trains the epochs since the last checkpoint again, and the best checkpoint keeps what it holds until beaten)."""
    best = run.best
    step.write_back(run)
    players = run.players
    estimate = monitor.estimate(run.config, players.sampling_generator, players.pair.noise_dim, num_classes)
    record = run.state.history[-1]
    record[MONITOR_KEY] = estimate
    improved = math.isfinite(estimate) and (best is None or estimate > best[1])
    if improved:
        run.save_best(image_shape)
        run.best = (int(record["epoch"]), estimate)
    if log:
        kept = "best so far, kept" if improved else "no best yet"
        if best is not None and not improved:
            kept = f"best {best[1]:.1f} at epoch {best[0]}"
        log(f"seed {run.config.seed} epoch {int(record['epoch'])}: validation Parzen estimate {estimate:.1f} ({kept})")


def _save(runs: list[Run], step: Step, image_shape: torch.Size, next_step: int | None = None) -> None:
    """Checkpoint every run, its players first brought up to date by `step` (`next_step`: inside an epoch)."""
    for run in runs:
        step.write_back(run)
        run.save(image_shape, next_step)


class RunsInTurn(Step):
    """Each run's own update rule (gan_core.updates) with its own learning rate and momentum on its own random stream,
    one run after another. One run is the ordinary training step; each of several runs trained this way is
    bit-identical to that run trained alone (the same calls on the same numbers), on any device and for any model."""

    def __init__(self, ranks: Ranks, images: torch.Tensor, several: bool, log: Callable[[str], None] | None) -> None:
        self.ranks, self.images = ranks, images
        if several and log:
            log("training the seeds in turn, each on its own random stream (bit-identical to each alone)")

    def permutation(self, run: Run, epoch: int) -> torch.Tensor:
        return self.ranks.permutation(len(self.images), self.images.device)

    def __call__(self, runs: list[Run], batch: slice, local_step: int) -> None:
        for run in runs:
            indices = self.ranks.share(run.permutation[batch])
            with run.turn():
                run.epoch_statistics[local_step] = run.update(indices, run.learning_rate, run.momentum)
            run.players.update_average()


def _restore(
    config: TrainConfig,
    out_dir: Path,
    data: TrainingData,
    options: RuntimeOptions,
    device: torch.device,
    ranks: Ranks,
    log: Callable[[str], None] | None,
    own_stream: bool,
) -> Run:
    """Build the players from `config.seed`, restore the run's last checkpoint, and give it its update rule (and, when
    it takes turns with other runs, its random stream as the restore left it)."""
    log = log if ranks.is_main else None
    local_config = dataclasses.replace(config, batch_size=ranks.local_batch)  # this rank's share of each batch
    torch.manual_seed(config.seed)
    players = Players.build(
        local_config, data.images, compile=options.compile, num_classes=data.num_classes or data.class_count
    )
    if options.distributed is not None:
        players.sync = options.distributed.average
    checkpoint = Checkpoint(out_dir, config, device, options.checkpoint_seconds, log, writes=ranks.is_main)
    state = checkpoint.restore(players)
    ranks.seed_rank(config.seed, state.step)
    images_per_epoch = data.steps_per_epoch(config) * config.batch_size * config.d_steps
    tracker = EpochTracker(config, state, images_per_epoch, device, options.progress if ranks.is_main else False, log)
    use_graph = options.use_cuda_graph(config, device) and not own_stream
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16, cache_enabled=not use_graph)
    labelled = None
    if data.all_labels is not None:  # a semi-supervised run: its labelled subset, drawn by its seed and stored
        subset = labelled_subset(data.all_labels.cpu().numpy(), config.labels_per_class, config.seed)
        if ranks.is_main:
            store_labelled_subset(out_dir, subset, config.labels_per_class, config.seed)
        rows = torch.as_tensor(subset, device=device)
        labelled = (data.images[rows], data.all_labels[rows])
        if log and state.epoch == 0:
            log(f"seed {config.seed}: {len(subset)} labelled training images ({config.labels_per_class} per class)")
    update = make_update(local_config, players, data.images, use_graph, autocast, data.labels, labelled)
    if use_graph and log:
        log("replaying each training step as a CUDA graph (RuntimeOptions.cuda_graph)")
    players.generator.train()
    players.discriminator.train()
    random = RandomStream(device) if own_stream else None
    board = None
    if options.tensorboard and ranks.is_main and state.epoch < config.epochs:
        board = TrainingBoard(out_dir, config, state.epoch, options.tensorboard_grid_every, data.num_classes)
    return Run(config, players, update, checkpoint, state, tracker, random, board=board, best=checkpoint.best_kept())


@dataclass(frozen=True)
class TrainingData:
    """The training split on the device: images, and for a conditional model their labels and the class count (the
    labels it is conditioned on); for a semi-supervised model every image's label and the class count (a run keeps
    its labelled subset of them)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int
    all_labels: torch.Tensor | None = None
    class_count: int = 0

    @classmethod
    def on_device(
        cls,
        config: TrainConfig,
        train_images: torch.Tensor,
        train_labels: torch.Tensor | None,
        num_classes: int,
        device: torch.device,
    ) -> TrainingData:
        images = train_images[: config.max_train_images or None].to(device=device, dtype=torch.float32).contiguous()
        spec = get_model_spec(config.model)
        labels = None
        if spec.conditional or spec.semi_supervised:
            if train_labels is None or num_classes < 2:
                kind = "conditional" if spec.conditional else "semi-supervised"
                raise ValueError(f"model {config.model!r} is {kind}: pass train_labels and num_classes")
            labels = train_labels[: len(images)].to(device=device, dtype=torch.long).contiguous()
        if spec.semi_supervised:
            data = cls(images, None, 0, all_labels=labels, class_count=num_classes)
        else:
            data = cls(images, labels, num_classes if labels is not None else 0)
        if data.steps_per_epoch(config) == 0:
            raise ValueError(
                f"batch_size={config.batch_size} x d_steps={config.d_steps} exceeds the {len(images)} training "
                "images: no full step fits"
            )
        return data

    def steps_per_epoch(self, config: TrainConfig) -> int:
        return len(self.images) // (config.batch_size * config.d_steps)
