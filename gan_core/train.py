"""The GAN training loop: k discriminator steps per generator step, the paper's SGD or Adam, checkpoint and resume.

Read `train_gan` top to bottom: set up the data and the players, restore the last checkpoint, then per epoch one
update rule (gan_core.updates) per step, statistics, checkpoint. The whole training split lives on the device as one
tensor and batches are index slices of a device-side permutation (no DataLoader, no per-image Python work).
Configuration is plain values (`TrainConfig`, gan_core/config.py) saved inside every checkpoint
(gan_core/checkpoint.py); how to run (`RuntimeOptions`) is not."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import torch

from gan_core.checkpoint import Checkpoint, TrainingState
from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.devices import resolve_device
from gan_core.distributed import Ranks
from gan_core.layout import checkpoint_file
from gan_core.locks import exclusive
from gan_core.models import get_model_spec
from gan_core.updates import (
    STEP_STATISTICS,
    Players,
    learning_rate,
    make_update,
    named_statistics,
    paper_momentum,
)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


class RunSummary(TypedDict):
    """What a stored run records of its training: the fields of gan_model's run record, and of the closing message a
    torchrun job's rank 0 sends (the one list of them)."""

    checkpoint: str
    epochs: int
    steps: int
    wall_seconds: float
    images_per_second: float
    device: str


@dataclass
class TrainResult:
    """What a training run produced and how it went."""

    checkpoint_path: Path
    epochs: int
    steps: int
    wall_seconds: float
    images_per_second: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    finished: bool = True

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}

    def summary(self) -> RunSummary:
        return RunSummary(
            checkpoint=str(self.checkpoint_path),
            epochs=self.epochs,
            steps=self.steps,
            wall_seconds=self.wall_seconds,
            images_per_second=self.images_per_second,
            device=self.device,
        )


def train_gan(
    config: TrainConfig,
    train_images: torch.Tensor,
    out_dir: str | os.PathLike[str],
    options: RuntimeOptions | None = None,
    log: Callable[[str], None] | None = None,
    train_labels: torch.Tensor | None = None,
    num_classes: int = 0,
) -> TrainResult:
    """Train (or resume, or return the finished run in) `out_dir` on `train_images` (N x C x H x W in [0, 1]); a
    conditional model also needs the images' `train_labels` (0..num_classes-1) and `num_classes`."""
    config.validate()
    options = options or RuntimeOptions()
    device = resolve_device(options.device)
    use_graph = options.use_cuda_graph(config, device)
    images = train_images[: config.max_train_images or None].to(device=device, dtype=torch.float32).contiguous()
    labels = None
    if get_model_spec(config.model).conditional:
        if train_labels is None or num_classes < 2:
            raise ValueError(f"model {config.model!r} is conditional: pass train_labels and num_classes")
        labels = train_labels[: len(images)].to(device=device, dtype=torch.long).contiguous()
    data = TrainingData(images, labels, num_classes if labels is not None else 0)
    batch, per_step = config.batch_size, config.batch_size * config.d_steps
    steps_per_epoch = images.shape[0] // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={batch} x d_steps={config.d_steps} exceeds the {images.shape[0]} training images: "
            "no full step fits"
        )

    if options.distributed is not None and not options.distributed.is_main:  # rank 0 holds the lock for all
        return _train(config, data, steps_per_epoch, Path(out_dir), options, device, use_graph, None)
    with exclusive(checkpoint_file(out_dir), options.holder, log):  # one trainer per run directory
        return _train(config, data, steps_per_epoch, Path(out_dir), options, device, use_graph, log)


@dataclass(frozen=True)
class TrainingData:
    """The training split on the device: images, and for a conditional model their labels and the class count."""

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int


def _train(
    config: TrainConfig,
    data: TrainingData,
    steps_per_epoch: int,
    out_dir: Path,
    options: RuntimeOptions,
    device: torch.device,
    use_graph: bool,
    log: Callable[[str], None] | None,
) -> TrainResult:
    per_step = config.batch_size * config.d_steps
    images = data.images
    ranks = Ranks(options.distributed, config)  # no-ops in one process
    torch.manual_seed(config.seed)
    players = Players.build(ranks.local_config, images, compile=options.compile, num_classes=data.num_classes)
    if options.distributed is not None:
        players.sync = options.distributed.average
    checkpoint = Checkpoint(out_dir, config, device, options.checkpoint_seconds, log, writes=ranks.is_main)
    state = checkpoint.restore(players)
    ranks.seed_rank(config.seed, state.step)
    progress = options.progress if ranks.is_main else False
    tracker = EpochTracker(config, state, steps_per_epoch * per_step, device, progress, log)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16, cache_enabled=not use_graph)
    update = make_update(ranks.local_config, players, images, use_graph, autocast, data.labels)
    if use_graph and log:
        log("replaying each training step as a CUDA graph (RuntimeOptions.cuda_graph)")
    players.generator.train()
    players.discriminator.train()

    for epoch in range(state.epoch, config.epochs):
        tracker.start_epoch()
        momentum = paper_momentum(config, epoch + 1) if config.optimizer == "paper" else None
        permutation, stats, first = state.take_epoch_progress() or (
            ranks.permutation(images.shape[0], device),
            torch.zeros(steps_per_epoch, len(STEP_STATISTICS), device=device),
            0,
        )
        stop_now = False
        for local_step in range(first, steps_per_epoch):
            lr = learning_rate(config, state.step, config.epochs * steps_per_epoch)
            indices = ranks.share(permutation[local_step * per_step : (local_step + 1) * per_step])
            stats[local_step] = update(indices, lr, momentum)
            players.update_average()
            state.step += 1
            if local_step % 100 == 99 or local_step == steps_per_epoch - 1:
                _raise_if_diverged(stats[: local_step + 1], state.step - local_step - 1, epoch, checkpoint.path)
            stop_now = options.interrupted()  # polled once per step
            if local_step + 1 < steps_per_epoch and (stop_now or checkpoint.due()):
                _raise_if_diverged(stats[: local_step + 1], state.step - local_step - 1, epoch, checkpoint.path)
                checkpoint.save(players, state, images.shape[1:], epoch_progress=(permutation, stats, local_step + 1))
                checkpoint.raise_if(stop_now, state)
        tracker.end_epoch(epoch + 1, state, ranks.mean(stats), lr, momentum)
        if options.distributed is not None:
            state.history[-1]["rank_weights"] = ranks.weights_in_sync(players.generator, players.discriminator)
        last, stop = epoch + 1 == config.epochs, options.should_stop(epoch + 1) or stop_now
        if last or stop or (epoch + 1) % options.checkpoint_every == 0 or checkpoint.due():
            checkpoint.save(players, state, images.shape[1:])
        checkpoint.raise_if(stop_now, state)
        if options.on_epoch_end is not None:
            sampler = players.sampling_generator
            sampler.eval()
            options.on_epoch_end(epoch + 1, sampler)
            players.generator.train()
        if stop and not last:
            return tracker.result(checkpoint.path, state, finished=False)
    return tracker.result(checkpoint.path, state, finished=True)


class EpochTracker:
    """Per-epoch statistics (the history stored in checkpoints), the progress bar and the log lines."""

    def __init__(
        self,
        config: TrainConfig,
        state: TrainingState,
        images_per_epoch: int,
        device: torch.device,
        progress: bool | None,
        log: Callable[[str], None] | None,
    ) -> None:
        from tqdm.auto import tqdm

        self.config, self.images_per_epoch, self.device, self.log = config, images_per_epoch, device, log
        self.bar = tqdm(
            total=config.epochs,
            initial=state.epoch,
            unit="epoch",
            disable=None if progress is None else not progress,
            desc=f"train {config.model} seed {config.seed}",
            leave=False,
        )
        self.started = 0.0

    def start_epoch(self) -> None:
        self.started = time.perf_counter()

    def end_epoch(
        self, epoch: int, state: TrainingState, stats: torch.Tensor, lr: float, momentum: float | None
    ) -> None:
        """Record the epoch's mean statistics in `state` (this synchronises with the device once per epoch)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.started
        means = named_statistics(stats.mean(0))
        rate = self.images_per_epoch / seconds
        state.epoch, state.elapsed = epoch, state.elapsed + seconds
        state.history.append(
            {
                "epoch": epoch,
                "step": state.step,
                **means,
                "images_per_second": rate,
                "seconds": seconds,
                "learning_rate": lr,
                "momentum": momentum if momentum is not None else 0.0,
            }
        )
        if self.log:
            self.log(
                f"epoch {epoch}/{self.config.epochs} step {state.step}: d_loss {means['d_loss']:.4f} "
                f"g_loss {means['g_loss']:.4f} D(x) {means['d_real']:.3f} D(G(z)) {means['d_fake']:.3f} "
                f"{rate:.0f} img/s on {self.device}"
            )
        self.bar.update(1)
        self.bar.set_postfix(d_loss=f"{means['d_loss']:.3f}", g_loss=f"{means['g_loss']:.3f}", img_s=f"{rate:.0f}")

    def result(self, checkpoint_path: Path, state: TrainingState, finished: bool) -> TrainResult:
        self.bar.close()
        this_run = state.history[state.resumed_from :]
        images = sum(r["images_per_second"] * r["seconds"] for r in this_run)
        seconds = sum(r["seconds"] for r in this_run)
        return TrainResult(
            checkpoint_path=checkpoint_path,
            epochs=len(state.history),
            steps=state.step,
            wall_seconds=state.elapsed,
            images_per_second=images / seconds if seconds else 0.0,
            device=str(self.device),
            history=state.history,
            resumed_from_epoch=state.resumed_from,
            finished=finished,
        )


def first_non_finite(stats: torch.Tensor) -> int | None:
    """The index of the first step whose statistics (steps x STEP_STATISTICS) hold NaN or inf; None when every one
    is finite."""
    finite_rows = torch.isfinite(stats).all(dim=1)
    return None if bool(finite_rows.all()) else int((~finite_rows).nonzero()[0, 0])


def _raise_if_diverged(stats: torch.Tensor, first_step: int, epoch: int, checkpoint_path: Path) -> None:
    bad = first_non_finite(stats)
    if bad is None:
        return
    kept = f"the last good checkpoint {checkpoint_path} is kept" if checkpoint_path.exists() else "no checkpoint yet"
    step = named_statistics(stats[bad])
    raise TrainingDiverged(
        f"non-finite loss at step {first_step + bad + 1} (epoch {epoch + 1}): d_loss={step['d_loss']}, "
        f"g_loss={step['g_loss']}; lower the learning rate or check the data for NaN; {kept}"
    )
