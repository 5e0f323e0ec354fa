"""A run's checkpoint: what it holds (weights, optimiser and random states, statistics, the config itself), its
atomic save that keeps the previous one, loading with a fallback to the previous one, the resume checks, and the
weights hash that identifies a trained model."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gan_core.config import SETTINGS_ADDED_LATER, TrainConfig
from gan_core.layout import best_checkpoint_file, checkpoint_file, previous_checkpoint_file
from gan_core.storage import atomic_output, remove_abandoned_temporaries
from gan_core.updates import Players

CHECKPOINT_FORMAT = 1


class TrainingInterrupted(RuntimeError):
    """Training stopped because `RuntimeOptions.stop_requested` said so; a checkpoint was written first."""


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
        self.best = best_checkpoint_file(run_dir)
        self.config, self.device, self.every_seconds, self.log = config, device, every_seconds, log
        self.last_saved = time.monotonic()

    def due(self) -> bool:
        """Whether the time-based cadence asks for a checkpoint now."""
        return time.monotonic() - self.last_saved >= self.every_seconds

    def restore(self, players: Players) -> TrainingState:
        """Load the newest readable checkpoint into `players` (same settings; `epochs` may be raised). The writer
        (who holds the run directory's lock) first removes what a killed trainer left half-written."""
        if self.writes:
            for path in (self.path, self.best):
                for abandoned in remove_abandoned_temporaries(path):
                    if self.log:
                        self.log(f"removed {abandoned.name}, left half-written by a trainer that was killed")
        saved = self._newest_readable()
        if saved is None:
            return TrainingState()
        check_resumable(self.path, saved, self.config)
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

    def best_kept(self) -> tuple[int, float] | None:
        """(epoch, validation monitor estimate) of the best checkpoint kept so far; None when there is none (or it
        is unreadable: the next estimate writes a new one)."""
        if not self.best.is_file():
            return None
        try:
            history = load_checkpoint(self.best)["history"]
        except ValueError as error:
            if self.log:
                self.log(f"{error}; the next validation estimate writes a new best checkpoint")
            return None
        estimate = history[-1].get("monitor_ll") if history else None
        return None if estimate is None else (int(history[-1]["epoch"]), float(estimate))

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
        best: bool = False,
    ) -> None:
        """Write the checkpoint atomically and durably, keeping the one it replaces as the previous one, with the
        global random state (a run taking turns with others has its own stream in place while it saves); `best`:
        the best checkpoint instead (the validation monitor's, at an epoch's end), which keeps no previous one."""
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
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "history": state.history,
            "elapsed_seconds": state.elapsed,
            "device": str(self.device),
        }
        if epoch_progress is not None:
            permutation, stats, next_step = epoch_progress
            payload["epoch_progress"] = {"permutation": permutation, "stats": stats, "next_step": next_step}
        size = _tensor_bytes(payload)  # about the file's size: a disk without room for it is refused first
        with atomic_output(self.best if best else self.path, None if best else self.previous, size) as tmp:
            torch.save(payload, tmp)
        if not best:
            self.last_saved = time.monotonic()


def _tensor_bytes(value: Any) -> int:
    """The bytes of every tensor in a (nested) checkpoint payload: what torch.save writes, less a few kilobytes."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(item) for item in value)
    return 0


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


def check_resumable(checkpoint_path: Path, state: dict[str, Any], config: TrainConfig) -> None:
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
