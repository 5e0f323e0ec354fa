"""TensorBoard event files of a training run, written while it trains: per-epoch scalars, a sample grid every few
epochs, and (once evaluated) the final metrics as hparams, so that TensorBoard's HParams view compares a sweep.

The events of a run live in its run directory (`layout.tensorboard_dir`), so `tensorboard --logdir <data root>/models`
shows every run, named `<dataset>/<experiment>/<run identity>/tensorboard`. The grid's noise comes from its own seeded
torch.Generator and the generator runs in eval mode under no_grad: writing events leaves the training's random streams
and weights exactly as they were without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gan_core.config import TrainConfig
from gan_core.layout import HPARAMS_SUFFIX, tensorboard_dir
from gan_core.models import sample_noise
from gan_core.monitor import MONITOR_KEY
from gan_core.plots import image_grid
from gan_core.sample import asked_labels, generator_of_each

# the scalars of every epoch: TensorBoard tag -> key of the epoch's history record (gan_core.runs.EpochTracker)
EPOCH_SCALARS = {
    "loss/discriminator": "d_loss",
    "loss/generator": "g_loss",
    "discriminator/D(x)": "d_real",
    "discriminator/D(G(z))": "d_fake",
    "schedule/learning_rate": "learning_rate",
    "schedule/momentum": "momentum",
    "speed/images_per_second": "images_per_second",
}
MONITOR_TAG = "validation/parzen_estimate"  # the validation monitor's estimate, on the epochs it is made
GRID_TAG = "samples/fixed_noise"
GRID_SIZE = 64  # samples in each grid, 8 x 8, from the same noise every time (grid seed 0)
GRID_SEED = 0
# the settings every run's hparams hold beside its experiment, sweep and the settings its experiment sets or sweeps:
# few, because TensorBoard's HParams view shows only its first few columns until more are ticked
HPARAM_SETTINGS = ("seed", "epochs", "learning_rate")
FINAL_METRIC_PREFIX = "final/"  # the tags of the final metrics the HParams view shows beside the settings


def _summary_writer(log_dir: Path, purge_step: int | None = None, suffix: str = ""):  # noqa: ANN202 (lazy import)
    from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where events are written

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step, filename_suffix=suffix)


class TrainingBoard:
    """The event file of one run: `epoch` after each epoch's statistics, `grid` every `grid_every` epochs.

    A resumed run purges the events after its checkpoint's epoch (TensorBoard's `purge_step`), so epochs trained
    again after a crash are not shown twice."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: TrainConfig,
        resume_epoch: int,
        grid_every: int,
        num_classes: int = 0,
    ) -> None:
        self.config, self.grid_every, self.num_classes = config, grid_every, num_classes
        self.writer = _summary_writer(tensorboard_dir(run_dir), purge_step=resume_epoch + 1 if resume_epoch else None)

    def epoch(self, record: Mapping[str, float]) -> None:
        """Write one epoch's history record (its `epoch` is the step on TensorBoard's x axis)."""
        epoch = int(record["epoch"])
        for tag, key in EPOCH_SCALARS.items():
            if key in record:
                self.writer.add_scalar(tag, float(record[key]), epoch)
        if MONITOR_KEY in record:
            self.writer.add_scalar(MONITOR_TAG, float(record[MONITOR_KEY]), epoch)
        self.writer.flush()

    def grid_due(self, epoch: int) -> bool:
        return self.grid_every > 0 and (epoch % self.grid_every == 0 or epoch == self.config.epochs or epoch == 1)

    @torch.no_grad()
    def grid(self, epoch: int, generator: nn.Module, noise_dim: int) -> None:
        """Write GRID_SIZE samples of `generator` (the sampling one: the average when kept) from fixed noise; a
        conditional model's for labels 0, 1, ..., a mixture's from each member in turn."""
        device = next(generator.parameters()).device
        noise = sample_noise(
            GRID_SIZE, noise_dim, self.config.noise, device, torch.Generator(device=device).manual_seed(GRID_SEED)
        )
        kwargs = {}  # the labels and members gan_core.sample draws for rows 0, 1, ...
        if self.num_classes:
            kwargs["labels"] = torch.from_numpy(asked_labels(GRID_SIZE, self.num_classes)).to(device)
        if self.config.n_generators > 1:
            kwargs["which"] = torch.from_numpy(generator_of_each(GRID_SIZE, self.config.n_generators)).to(device)
        was_training = generator.training
        generator.eval()
        try:
            images = generator(noise, **kwargs).float().clamp(0, 1).cpu().numpy()
        finally:
            generator.train(was_training)
        self.writer.add_image(GRID_TAG, image_grid(images, columns=8), epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def hparams_of(
    config: Mapping[str, object], experiment: str, sweep: str, varied: Iterable[str] = ()
) -> dict[str, float | int | str | bool]:
    """The hparams of one run: its experiment and sweep ('' when none), the settings that tell runs apart
    (HPARAM_SETTINGS) and the `varied` ones (the experiment's own settings, its sweep's swept ones), as plain values;
    not every TrainConfig field (the experiment's definition holds the rest), so the HParams view shows what differs."""
    names = [*HPARAM_SETTINGS, *(name for name in varied if name not in HPARAM_SETTINGS)]
    plain = {name: config[name] for name in names if isinstance(config.get(name), int | float | str | bool)}
    return {"experiment": experiment, "sweep": sweep, **plain}


def write_hparams(
    run_dir: str | os.PathLike[str], hparams: Mapping[str, object], metrics: Mapping[str, float], step: int
) -> Path:
    """(Re)write the run's hparams and final `metrics` (TensorBoard tag -> value, at `step`) into its event
    directory, replacing the ones written before (one hparams file a run: the newest evaluation). Returns the file."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    log_dir = tensorboard_dir(run_dir)
    earlier = set(log_dir.glob(f"*{HPARAMS_SUFFIX}"))
    finite = {tag: float(value) for tag, value in metrics.items() if np.isfinite(value)}
    experiment, start, end = hparams_summaries(dict(hparams), finite)
    writer = _summary_writer(log_dir, suffix=HPARAMS_SUFFIX)
    try:
        for summary in (experiment, start, end):  # at the run's last step: no step goes back, nothing is purged
            writer.file_writer.add_summary(summary, step)
        for tag, value in finite.items():
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()
    (written,) = set(log_dir.glob(f"*{HPARAMS_SUFFIX}")) - earlier
    for path in earlier:
        path.unlink(missing_ok=True)
    return written
