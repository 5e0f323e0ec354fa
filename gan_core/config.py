"""What to train and how to run it: `TrainConfig` (every setting that determines a trained model's weights, with
its bounds and recipes; saved inside every checkpoint) and `RuntimeOptions` (device, cadence, progress: not saved).
The Dagster run config is generated from `TrainConfig`'s annotations (assets/configs.py)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch import nn

from gan_core.distributed import DistributedContext
from gan_core.losses import LOSSES, get_loss
from gan_core.models import MODELS, get_model_spec

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
    # Every this many epochs (and at the last), estimate the validation log-likelihood with a Parzen window on
    # `monitor_samples` samples (window `monitor_sigma`) and keep the checkpoint of the best estimate beside the last
    # (gan_core.monitor; 0: off). The paper's released configuration logged this estimate every epoch (100 samples,
    # sigma 0.2); the best checkpoint is how a best epoch can be picked without looking at the test images.
    monitor_every: Annotated[int, Bounds(ge=0)] = 0
    monitor_samples: Annotated[int, Bounds(ge=2)] = 1000
    monitor_sigma: Annotated[float, Positive] = 0.2
    # Semi-supervised models (ModelSpec.semi_supervised): how many training images of each class keep their label,
    # drawn by the run's seed and stored in its directory (gan_core.semi_supervised); the rest train unlabelled.
    # 0 for every other model.
    labels_per_class: Annotated[int, Bounds(ge=0)] = 0

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
        if self.monitor_every < 0:
            raise ValueError(f"monitor_every must be >= 0 (0 = off), got {self.monitor_every}")
        if self.monitor_samples < 2:
            raise ValueError(f"monitor_samples must be at least 2 (samples per estimate), got {self.monitor_samples}")
        if not self.monitor_sigma > 0 or not math.isfinite(self.monitor_sigma):
            raise ValueError(f"monitor_sigma must be positive and finite (the window width), got {self.monitor_sigma}")
        spec = get_model_spec(self.model)
        if spec.semi_supervised:
            if self.labels_per_class < 1:
                raise ValueError(
                    f"model {self.model!r} is semi-supervised: labels_per_class must be at least 1, got "
                    f"{self.labels_per_class}"
                )
            if not get_loss(self.loss).probabilistic:
                probabilistic = [name for name, loss in LOSSES.items() if loss.probabilistic]
                raise ValueError(
                    f"model {self.model!r} is semi-supervised: its D(x) is a probability, so loss must be one of "
                    f"{probabilistic}, got {self.loss!r}"
                )
            if self.update != "alternating" or self.n_generators != 1 or self.n_discriminators != 1:
                raise ValueError(
                    f"model {self.model!r} is semi-supervised: it trains with update='alternating' and one generator "
                    f"and discriminator, got update={self.update!r}, n_generators={self.n_generators}, "
                    f"n_discriminators={self.n_discriminators}"
                )
        elif self.labels_per_class:
            semi = [name for name, model in MODELS.items() if model.semi_supervised]
            raise ValueError(
                f"labels_per_class={self.labels_per_class} applies to the semi-supervised models {semi}; model "
                f"{self.model!r} needs labels_per_class=0"
            )
        if spec.bidirectional:
            plain = [name for name, loss in LOSSES.items() if loss.probabilistic and loss.feature_loss is None]
            players = (self.n_generators, self.n_discriminators)
            if self.loss not in plain or self.update != "alternating" or players != (1, 1):
                raise ValueError(
                    f"model {self.model!r} (BiGAN) trains with update='alternating', one generator and discriminator "
                    f"and a loss of {plain}; got update={self.update!r}, loss={self.loss!r}, "
                    f"n_generators={self.n_generators}, n_discriminators={self.n_discriminators}"
                )
        if get_loss(self.loss).feature_loss is not None and not spec.semi_supervised:
            raise ValueError(
                f"loss {self.loss!r} matches D's features, which only a semi-supervised model's D has; model "
                f"{self.model!r} needs another loss"
            )
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
    "monitor_every": 0,
    "monitor_samples": 1000,
    "monitor_sigma": 0.2,
    "labels_per_class": 0,
}


def default_train_config(
    model: str, loss: str | None = None, dataset: str | None = None, **overrides: Any
) -> TrainConfig:
    """`loss` (default: the model's, ModelSpec.loss); the model's recipe, then the loss's recipe, then the
    `dataset`'s recipe for this model (if a dataset is given and has one), then `overrides` (None values ignored) over
    TrainConfig's defaults (the paper's): the paper's SGD for `paper_mlp*`, DCGAN's Adam for `dcgan`, WGAN-GP's for
    `wgan_gp`, settings fitted to 8x8 images for digits."""
    loss = loss or get_model_spec(model).loss
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
    # Train several seeds as one stacked model (gan_core.batched): None = on CUDA wherever it applies (elsewhere the
    # seeds take turns in one loop, each bit-identical to the seed trained alone); True = required; False = in turn.
    stack_seeds: bool | None = None
    checkpoint_every: int = 5  # epochs between checkpoints
    checkpoint_seconds: float = 300.0  # also checkpoint inside an epoch once this long has passed since the last one
    progress: bool | None = None  # progress bar: None = on a terminal (tqdm decides); True / False = always / never
    tensorboard: bool = True  # write TensorBoard events into each run directory (gan_core.tensorboard)
    tensorboard_grid_every: int = 5  # epochs between sample grids in those events (0: none)
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

    def portable(self) -> dict[str, Any]:
        """The plain settings another process needs to train as this one (a torchrun rank: `RuntimeOptions(**these,
        device=..., distributed=...)`); the device, callables and progress display stay with each process."""
        names = ("checkpoint_every", "checkpoint_seconds", "holder", "tensorboard", "tensorboard_grid_every")
        return {name: getattr(self, name) for name in names}

    def should_stop(self, epoch: int) -> bool:
        return (self.stop_after_epoch is not None and epoch >= self.stop_after_epoch) or (
            self.stop_after_time is not None and time.time() >= self.stop_after_time
        )

    def interrupted(self) -> bool:
        return self.stop_requested is not None and self.stop_requested()


def cuda_graph_supported(config: TrainConfig) -> bool:
    """Whether the step of `config` can be replayed as a CUDA graph: the simultaneous update with the paper's SGD, for
    an unconditional model (the graph's static input is the image batch alone)."""
    simultaneous_sgd = config.update == "simultaneous" and config.optimizer == "paper"
    two_players = config.n_generators == 1 and config.n_discriminators == 1
    return simultaneous_sgd and two_players and not get_model_spec(config.model).conditional
