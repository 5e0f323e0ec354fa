"""One run the training loop drives (`Run`): its players, checkpoint, state and random stream, what it records each
epoch (`EpochTracker`), the divergence that can stop it, and what it produced (`TrainResult`, `RunSummary`).

The loop (gan_core/train.py) trains S >= 1 runs of one configuration; S = 1 is the ordinary run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import torch

from gan_core.checkpoint import Checkpoint, TrainingInterrupted, TrainingState
from gan_core.config import TrainConfig
from gan_core.updates import STEP_STATISTICS, Players, UpdateRule, named_statistics

if TYPE_CHECKING:
    from gan_core.tensorboard import TrainingBoard


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


class RandomStream:
    """A run's own random stream while several runs take turns on torch's global generators (the ones a run alone
    draws from): each turn puts it in place, draws, and keeps where it left off."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            self.cpu = torch.get_rng_state()
            if self.cuda is not None:
                self.cuda = torch.cuda.get_rng_state(self.device)


@dataclass(eq=False)
class Run:
    """One run of the loop: its settings, players, update rule, checkpoint, state and epoch tracker; `random`, its
    own stream when it takes turns with other runs (None: the global generators are its own); this epoch's
    permutation of the training images and statistics (one STEP_STATISTICS row per step); the divergence that
    stopped it; the learning rate and momentum the loop set for this step; its TensorBoard events (None: off)."""

    config: TrainConfig
    players: Players
    update: UpdateRule
    checkpoint: Checkpoint
    state: TrainingState
    tracker: EpochTracker
    random: RandomStream | None = None
    permutation: torch.Tensor | None = None
    epoch_statistics: torch.Tensor | None = None
    error: TrainingDiverged | None = None
    learning_rate: float = 0.0  # this step's, and this epoch's momentum (None: an optimiser without one)
    momentum: float | None = None
    board: TrainingBoard | None = None
    best: tuple[int, float] | None = None  # (epoch, estimate) its best checkpoint holds (the validation monitor's)

    def turn(self) -> contextlib.AbstractContextManager[None]:
        """Draw from this run's random stream inside this block."""
        return self.random.turn() if self.random is not None else contextlib.nullcontext()

    def start_epoch(self, steps_per_epoch: int, permutation: Callable[[], torch.Tensor]) -> int:
        """Take up a mid-epoch checkpoint's permutation and statistics, or draw a new `permutation()`; the step of
        the epoch to go on from."""
        self.tracker.start_epoch()
        with self.turn():
            self.permutation, self.epoch_statistics, first = self.state.take_epoch_progress() or (
                permutation(),
                torch.zeros(steps_per_epoch, len(STEP_STATISTICS), device=self.tracker.device),
                0,
            )
        return first

    def save(self, image_shape: torch.Size, next_step: int | None = None) -> None:
        """Checkpoint the run with its own random state; `next_step` inside an epoch (with its progress)."""
        progress = None  # copies: the step may hold them as views of all runs' (which would all be saved)
        if next_step is not None:
            progress = (self.permutation.clone(), self.epoch_statistics.clone(), next_step)
        with self.turn():
            self.checkpoint.save(self.players, self.state, image_shape, epoch_progress=progress)

    def save_best(self, image_shape: torch.Size) -> None:
        """Write the run, at an epoch's end, as its best checkpoint (the validation monitor's)."""
        with self.turn():
            self.checkpoint.save(self.players, self.state, image_shape, best=True)

    def stop_if_diverged(self, steps_done: int, epoch: int, alone: bool) -> None:
        """Set `error` when one of this epoch's first `steps_done` steps holds a NaN or infinite statistic (the last
        good checkpoint is kept: a stopped run is not saved again)."""
        statistics = self.epoch_statistics[:steps_done]
        bad = first_non_finite(statistics)
        if bad is None or self.error is not None:
            return
        step = named_statistics(statistics[bad])
        where = f"non-finite loss at step {self.state.step - steps_done + bad + 1} (epoch {epoch + 1})"
        losses = f"d_loss={step['d_loss']}, g_loss={step['g_loss']}"
        if alone:
            kept = f"the last good checkpoint {self.checkpoint.path} is kept" if self.checkpoint.path.exists() else ""
            advice = "lower the learning rate or check the data for NaN"
            self.error = TrainingDiverged(f"{where}: {losses}; {advice}; {kept or 'no checkpoint yet'}")
        else:
            kept = f"its last good checkpoint {self.checkpoint.path} is kept" if self.checkpoint.path.exists() else ""
            self.error = TrainingDiverged(
                f"seed {self.config.seed}: {where}: {losses}; the other seeds trained on; "
                f"{kept or 'it has no checkpoint yet'}"
            )

    def outcome(self) -> TrainResult | TrainingDiverged:
        """The run's result (finished: at its last epoch), or the divergence that stopped it."""
        finished = self.state.epoch == self.config.epochs
        return self.error or self.tracker.result(self.checkpoint.path, self.state, finished)


class Step:
    """One training step for the live runs of a group, writing each run's row of `epoch_statistics`; it also says
    where each run's epoch permutations come from."""

    def permutation(self, run: Run, epoch: int) -> torch.Tensor:
        """`run`'s permutation of the training images for `epoch` (0-based), drawn in its turn."""
        raise NotImplementedError

    def start_epoch(self, runs: list[Run]) -> None:
        """Called once the live `runs` have their permutation and statistics for the epoch."""

    def __call__(self, runs: list[Run], batch: slice, local_step: int) -> None:
        """Step the live `runs` on the rows `batch` of their permutations, each with its `learning_rate` and
        `momentum`."""
        raise NotImplementedError

    def write_back(self, run: Run) -> None:
        """Bring `run`'s players up to date before its checkpoint is written (weights kept elsewhere)."""


def interrupted(runs: list[Run]) -> TrainingInterrupted:
    """The error a requested stop raises once `runs` are checkpointed."""
    if len(runs) == 1:
        state, path = runs[0].state, runs[0].checkpoint.path
        return TrainingInterrupted(
            f"training stopped on request at step {state.step} (epoch {state.epoch + 1}); "
            f"checkpoint {path} written, the next run resumes from it"
        )
    where = ", ".join(f"seed {run.config.seed} at step {run.state.step}" for run in runs)
    return TrainingInterrupted(f"training stopped on request ({where}); checkpoints written, the next run resumes")


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
        self, epoch: int, state: TrainingState, statistics: torch.Tensor, lr: float, momentum: float | None
    ) -> None:
        """Record the epoch's mean statistics in `state` (this synchronises with the device once per epoch)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.started
        means = named_statistics(statistics.mean(0))
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


def first_non_finite(statistics: torch.Tensor) -> int | None:
    """The index of the first step whose statistics (steps x STEP_STATISTICS) hold NaN or inf; None when every one
    is finite."""
    finite_rows = torch.isfinite(statistics).all(dim=1)
    return None if bool(finite_rows.all()) else int((~finite_rows).nonzero()[0, 0])
