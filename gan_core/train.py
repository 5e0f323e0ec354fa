"""The GAN training loop: k discriminator steps per generator step, the paper's SGD or Adam, checkpoint and resume.

Read `train_gan` top to bottom: set up the data and the players, restore the last checkpoint, then per epoch one
update rule (gan_core.updates) per step, statistics, checkpoint. The whole training split lives on the device as one
tensor and batches are index slices of a device-side permutation (no DataLoader, no per-image Python work).
Configuration is plain values (`TrainConfig`) saved inside every checkpoint; how to run (`RuntimeOptions`) is not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from torch import nn

from gan_core.devices import resolve_device
from gan_core.distributed import DistributedContext, Ranks
from gan_core.layout import checkpoint_file, exclusive, previous_checkpoint_file
from gan_core.losses import get_loss
from gan_core.models import get_model_spec
from gan_core.storage import atomic_output
from gan_core.updates import (
    Players,
    cuda_graph_supported,
    learning_rate,
    make_update,
    paper_momentum,
)

CHECKPOINT_FORMAT = 1
OPTIMIZERS = ("paper", "adam")
UPDATES = ("simultaneous", "alternating")
NOISES = ("uniform", "gaussian")


@dataclass(frozen=True)
class Bounds:
    """Allowed range of a numeric TrainConfig setting, read from its `Annotated` type (the Dagster config turns it
    into a pydantic constraint, so a bad value is refused before a run starts)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None


Positive = Bounds(gt=0)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


class TrainingInterrupted(RuntimeError):
    """Training stopped because `RuntimeOptions.stop_requested` said so; a checkpoint was written first."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model's weights (defaults: the paper's MNIST configuration).

    `model` and `loss` name entries of gan_core.models.MODELS and gan_core.losses.LOSSES. The annotations carry the
    allowed values and bounds, from which the Dagster asset config is derived.
    """

    model: str = "paper_mlp"
    loss: str = "non_saturating"
    optimizer: Literal["paper", "adam"] = "paper"
    update: Literal["simultaneous", "alternating"] = "simultaneous"
    epochs: Annotated[int, Positive] = 100
    batch_size: Annotated[int, Positive] = 100
    learning_rate: Annotated[float, Positive] = 0.1
    d_steps: Annotated[int, Positive] = 1
    momentum_start: Annotated[float, Bounds(ge=0, lt=1)] = 0.5
    momentum_end: Annotated[float, Bounds(ge=0, lt=1)] = 0.7
    momentum_saturate_epoch: Annotated[int, Positive] = 250
    lr_decay: Annotated[float, Bounds(ge=1)] = 1.000004
    min_learning_rate: Annotated[float, Bounds(ge=0)] = 1e-6
    adam_beta1: Annotated[float, Bounds(ge=0, lt=1)] = 0.5
    adam_beta2: Annotated[float, Bounds(ge=0, lt=1)] = 0.999
    gp_weight: Annotated[float, Bounds(ge=0)] = 10.0
    noise: Literal["uniform", "gaussian"] = "uniform"
    seed: int = 0
    max_train_images: Annotated[int, Bounds(ge=0)] = 0
    bf16: bool = False
    # Keep an exponential moving average of the generator's weights, updated after every step with this decay (0: off);
    # samples and scores come from the average (Karras et al. 2018; Yazici et al. 2019). It smooths the step-to-step
    # oscillation of GAN training: on digits, Fréchet distance 4.0 against 9.0 for the last weights at epoch 125.
    ema_decay: Annotated[float, Bounds(ge=0, lt=1)] = 0.0
    # Several players (the same trainer): a mixture of k generators sharing the discriminator, each sample from a
    # uniformly chosen one; k discriminators whose losses are averaged, the generator trained against their mean (GMAN).
    n_generators: Annotated[int, Positive] = 1
    n_discriminators: Annotated[int, Positive] = 1
    # Decay the learning rate linearly towards 0 over this last fraction of the run's updates (0: off; either
    # optimiser, on top of the paper's decay). It settles the players' step-to-step oscillation where an average of
    # the weights cannot (a generator with batch norm); the span is the configured epochs' updates.
    lr_anneal_fraction: Annotated[float, Bounds(ge=0, le=1)] = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        get_model_spec(self.model)
        get_loss(self.loss)
        for name, allowed in (("optimizer", OPTIMIZERS), ("update", UPDATES), ("noise", NOISES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {list(allowed)}")
        if self.update == "simultaneous" and self.d_steps != 1:
            raise ValueError(f"update='simultaneous' needs d_steps=1, got d_steps={self.d_steps}")
        if self.n_discriminators > 1 and get_loss(self.loss).penalty is not None:
            raise ValueError(f"n_discriminators > 1 averages plain losses; loss {self.loss!r} has a penalty term")
        for name in ("epochs", "batch_size", "d_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ValueError(f"learning_rate must be positive and finite, got {self.learning_rate}")
        if not 0.0 <= self.lr_anneal_fraction <= 1.0:
            raise ValueError(f"lr_anneal_fraction must be in [0, 1], got {self.lr_anneal_fraction}")
        if not self.lr_decay >= 1.0:
            raise ValueError(f"lr_decay must be >= 1 (the rate is divided by it each update), got {self.lr_decay}")
        if self.max_train_images < 0:
            raise ValueError(f"max_train_images must be >= 0 (0 = all), got {self.max_train_images}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that key a stored run: all of them, but a setting added after runs were first stored is left
        out while it has the value that reproduces the earlier behaviour, so those runs keep their keys."""
        return {
            key: value
            for key, value in self.to_dict().items()
            if not (key in SETTINGS_ADDED_LATER and value == SETTINGS_ADDED_LATER[key])
        }


# TrainConfig settings added after results were first stored, with their value that trains as before they existed.
SETTINGS_ADDED_LATER: dict[str, Any] = {
    "ema_decay": 0.0,
    "n_generators": 1,
    "n_discriminators": 1,
    "lr_anneal_fraction": 0.0,
}


def default_train_config(
    model: str, loss: str = "non_saturating", dataset: str | None = None, **overrides: Any
) -> TrainConfig:
    """The model's recipe, then the loss's recipe, then the `dataset`'s recipe for this model (if a dataset is given
    and has one), then `overrides` (None values ignored) over TrainConfig's defaults (the paper's): the paper's SGD
    for `paper_mlp*`, DCGAN's Adam for `dcgan`, WGAN-GP's for `wgan_gp`, settings fitted to 8x8 images for digits."""
    settings = {**get_model_spec(model).recipe, **get_loss(loss).recipe}
    if dataset is not None:
        from gan_core.sources import get_dataset_spec  # sources imports data I/O the trainer does not otherwise need

        settings.update(get_dataset_spec(dataset).recipes.get(model, {}))
    settings.update({key: value for key, value in overrides.items() if value is not None})
    config = TrainConfig(model=model, loss=loss, **settings)
    config.validate()
    return config


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run (not what to compute): device, torch.compile, CUDA graphs, checkpoint cadence, progress display."""

    device: str = "auto"
    compile: bool = False
    # Replay the simultaneous paper-SGD step as a CUDA graph: None = wherever it applies (CUDA, that update and
    # optimiser, no compile); True = required (an error names what stands in the way); False = never.
    cuda_graph: bool | None = None
    checkpoint_every: int = 5  # epochs between checkpoints
    checkpoint_seconds: float = 300.0  # also checkpoint inside an epoch once this long has passed since the last one
    progress: bool | None = None  # progress bar: None = on a terminal (tqdm decides); True / False = always / never
    stop_after_epoch: int | None = None  # stop early (as if killed) after this epoch's checkpoint; for testing resume
    stop_after_time: float | None = None  # time.time() deadline: the first epoch ending past it checkpoints and stops
    on_epoch_end: Callable[[int, nn.Module], None] | None = None  # called with (epoch, generator), e.g. to evaluate
    # polled after every step: when it returns True, training writes a checkpoint and raises TrainingInterrupted
    stop_requested: Callable[[], bool] | None = None
    holder: str = ""  # who trains, named to a second trainer that waits for this run directory (e.g. a Dagster run)
    distributed: DistributedContext | None = None  # this process's rank under torchrun (gan_core.distributed)

    def use_cuda_graph(self, config: TrainConfig, device: torch.device) -> bool:
        """The one CUDA-graph policy: where it applies unless switched off; an explicit request it cannot honour on
        a GPU-capable setting is an error (on the CPU it is ignored)."""
        if self.cuda_graph is True and not cuda_graph_supported(config):
            raise ValueError(
                f"cuda_graph=True replays the simultaneous paper-SGD step; got update={config.update!r}, "
                f"optimizer={config.optimizer!r}: use update='simultaneous' and optimizer='paper', or cuda_graph=False"
            )
        if self.cuda_graph is True and self.compile:
            raise ValueError("cuda_graph=True and compile=True exclude each other; choose one of them")
        wanted = self.cuda_graph is not False and cuda_graph_supported(config) and not self.compile
        return wanted and device.type == "cuda"

    def should_stop(self, epoch: int) -> bool:
        return (self.stop_after_epoch is not None and epoch >= self.stop_after_epoch) or (
            self.stop_after_time is not None and time.time() >= self.stop_after_time
        )

    def interrupted(self) -> bool:
        return self.stop_requested is not None and self.stop_requested()


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
            torch.zeros(steps_per_epoch, 4, device=device),  # d_loss, g_loss, D(x), D(G(z))
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


@dataclass
class TrainingState:
    """Where a run stands: epochs and steps done, per-epoch statistics, training seconds so far."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed: float = 0.0
    resumed_from: int = 0
    # inside an epoch: (permutation, statistics so far, next step of the epoch), from a mid-epoch checkpoint
    epoch_progress: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def take_epoch_progress(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        progress, self.epoch_progress = self.epoch_progress, None
        return progress


class Checkpoint:
    """Save and restore a run: weights, optimiser states, random states, statistics, the config itself and, for a
    checkpoint written inside an epoch, the epoch's permutation and statistics so far. The checkpoint it replaces is
    kept as the previous one, which is used (and the damaged one named) when the current one is unreadable."""

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        device: torch.device,
        every_seconds: float,
        log: Callable[[str], None] | None,
        writes: bool = True,
    ) -> None:
        self.writes = writes  # under torchrun only rank 0 writes; every rank reads
        self.path, self.previous = checkpoint_file(run_dir), previous_checkpoint_file(run_dir)
        self.config, self.device, self.every_seconds, self.log = config, device, every_seconds, log
        self.last_saved = time.monotonic()

    def due(self) -> bool:
        """Whether the time-based cadence asks for a checkpoint now."""
        return time.monotonic() - self.last_saved >= self.every_seconds

    def restore(self, players: Players) -> TrainingState:
        """Load the newest readable checkpoint into `players` (same settings; `epochs` may be raised)."""
        saved = self._newest_readable()
        if saved is None:
            return TrainingState()
        _check_resumable(self.path, saved, self.config)
        players.load_state(saved)
        torch.set_rng_state(saved["rng_cpu"].cpu())
        if self.device.type == "cuda" and saved.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(saved["rng_cuda"].cpu(), self.device)
        epoch, progress = int(saved["epoch"]), saved.get("epoch_progress")
        state = TrainingState(epoch, int(saved["step"]), list(saved["history"]), float(saved["elapsed_seconds"]), epoch)
        where = f"epoch {epoch}/{self.config.epochs}"
        if progress is not None:
            state.epoch_progress = (progress["permutation"], progress["stats"], int(progress["next_step"]))
            where = f"epoch {epoch}/{self.config.epochs} + {progress['next_step']} steps of epoch {epoch + 1}"
        if self.log:
            self.log(f"resuming from {self.path} at {where}, step {state.step}")
        return state

    def _newest_readable(self) -> dict[str, Any] | None:
        problems = []
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                saved = load_checkpoint(path, self.device)
            except ValueError as error:
                problems.append(str(error))
                if self.log:
                    self.log(f"{error}; trying the previous checkpoint")
                continue
            if problems and self.log:
                self.log(f"using the previous checkpoint {path}")
            return saved
        if problems:
            raise ValueError(f"no readable checkpoint in {self.path.parent}: {'; '.join(problems)}")
        return None

    def save(
        self,
        players: Players,
        state: TrainingState,
        image_shape: torch.Size,
        epoch_progress: tuple[torch.Tensor, torch.Tensor, int] | None = None,
        rng: torch.Generator | None = None,
    ) -> None:
        """Write the checkpoint atomically and durably, keeping the one it replaces as the previous one. The random
        state saved is the global one, or `rng`'s (a seed trained in a batch draws from a generator of its own)."""
        if not self.writes:
            self.last_saved = time.monotonic()  # keep the cadence on ranks that do not write
            return
        payload = {
            "format_version": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "image_shape": list(image_shape),
            "noise_dim": players.pair.noise_dim,
            "num_classes": players.pair.num_classes,
            **players.state(),
            "rng_cpu": rng.get_state() if rng is not None and rng.device.type == "cpu" else torch.get_rng_state(),
            "rng_cuda": (rng.get_state() if rng is not None else torch.cuda.get_rng_state(self.device))
            if self.device.type == "cuda"
            else None,
            "history": state.history,
            "elapsed_seconds": state.elapsed,
            "device": str(self.device),
        }
        if epoch_progress is not None:
            permutation, stats, next_step = epoch_progress
            payload["epoch_progress"] = {"permutation": permutation, "stats": stats, "next_step": next_step}
        with atomic_output(self.path, keep_previous=self.previous) as tmp:
            torch.save(payload, tmp)
        self.last_saved = time.monotonic()

    def raise_if(self, stop_requested: bool, state: TrainingState) -> None:
        """Raise TrainingInterrupted (after a save) when a stop was requested."""
        if stop_requested:
            raise TrainingInterrupted(
                f"training stopped on request at step {state.step} (epoch {state.epoch + 1}); "
                f"checkpoint {self.path} written, the next run resumes from it"
            )


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
        d_loss, g_loss, d_real, d_fake = stats.mean(0).tolist()
        rate = self.images_per_epoch / seconds
        state.epoch, state.elapsed = epoch, state.elapsed + seconds
        state.history.append(
            {
                "epoch": epoch,
                "step": state.step,
                "d_loss": d_loss,
                "g_loss": g_loss,
                "d_real": d_real,
                "d_fake": d_fake,
                "images_per_second": rate,
                "seconds": seconds,
                "learning_rate": lr,
                "momentum": momentum if momentum is not None else 0.0,
            }
        )
        if self.log:
            self.log(
                f"epoch {epoch}/{self.config.epochs} step {state.step}: d_loss {d_loss:.4f} g_loss {g_loss:.4f} "
                f"D(x) {d_real:.3f} D(G(z)) {d_fake:.3f} {rate:.0f} img/s on {self.device}"
            )
        self.bar.update(1)
        self.bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}", img_s=f"{rate:.0f}")

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


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint safely (`weights_only=True`) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} is unreadable: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format_version") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a gan-pipeline checkpoint of format {CHECKPOINT_FORMAT}")
    return checkpoint


def _check_resumable(checkpoint_path: Path, state: dict[str, Any], config: TrainConfig) -> None:
    """A checkpoint resumes under the same settings; `epochs` alone may be raised to extend a run, because no
    schedule depends on the total (momentum saturates at a fixed epoch, the learning rate decays per update), unless
    `lr_anneal_fraction` ramps the rate down over the configured epochs: then `epochs` must match too."""
    extendable = () if config.lr_anneal_fraction > 0 else ("epochs",)
    saved = {key: value for key, value in {**SETTINGS_ADDED_LATER, **state["config"]}.items() if key not in extendable}
    wanted = {key: value for key, value in config.to_dict().items() if key not in extendable}
    if saved != wanted:
        changed = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
        raise ValueError(
            f"checkpoint {checkpoint_path} was trained with other settings (differing: {', '.join(changed)}; "
            f"saved: {state['config']}); use another output directory for this configuration"
        )
    if int(state["epoch"]) > config.epochs:
        raise ValueError(
            f"checkpoint {checkpoint_path} is already at epoch {state['epoch']}, past the requested epochs="
            f"{config.epochs}; ask for at least {state['epoch']} epochs or use another output directory"
        )


def first_non_finite(stats: torch.Tensor) -> int | None:
    """The index of the first step whose statistics (steps x 4) hold NaN or inf; None when every one is finite."""
    finite_rows = torch.isfinite(stats).all(dim=1)
    return None if bool(finite_rows.all()) else int((~finite_rows).nonzero()[0, 0])


def _raise_if_diverged(stats: torch.Tensor, first_step: int, epoch: int, checkpoint_path: Path) -> None:
    bad = first_non_finite(stats)
    if bad is None:
        return
    kept = f"the last good checkpoint {checkpoint_path} is kept" if checkpoint_path.exists() else "no checkpoint yet"
    raise TrainingDiverged(
        f"non-finite loss at step {first_step + bad + 1} (epoch {epoch + 1}): d_loss={stats[bad, 0].item()}, "
        f"g_loss={stats[bad, 1].item()}; lower the learning rate or check the data for NaN; {kept}"
    )


def checkpoint_weights_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 over the generator and discriminator weights (and the generator's average, when kept) of a checkpoint
    (not timings or file bytes)."""
    state = load_checkpoint(path)
    digest = hashlib.sha256()
    for part in ("generator", "discriminator", "generator_average"):
        if part not in state:
            continue
        for key, tensor in sorted(state[part].items()):
            digest.update(f"{part}.{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
