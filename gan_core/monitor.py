"""The validation monitor: every `monitor_every` epochs a cheap Parzen-window estimate of the validation images'
log-likelihood under `monitor_samples` samples (window `monitor_sigma`), logged in the run's history as `monitor_ll`;
the checkpoint of the best estimate so far is kept beside the last one (gan_core.layout.best_checkpoint_file).

The paper's released configuration logged such an estimate every epoch (100 samples, sigma 0.2) and stored no best
epoch; the default here draws 1,000 samples from the same fixed noise every time, so that epochs are compared on less
noise. The estimate selects a checkpoint and never sees the test images: those are scored under the exact protocol
(gan_core.parzen) afterwards, for the best checkpoint and the last alike."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gan_core.config import TrainConfig
from gan_core.models import sample_noise
from gan_core.parzen import parzen_log_likelihood

MONITOR_KEY = "monitor_ll"  # the history field of each monitored epoch
MONITOR_NOISE_SEED = 0  # the samples of every estimate come from the same noise


class ValidationMonitor:
    """The monitor of runs of one configuration's monitor settings, on validation `images` (N x ...)."""

    def __init__(self, images: torch.Tensor, device: torch.device) -> None:
        self.points = images.flatten(1).to(device=device, dtype=torch.float32)
        self.device = device

    @staticmethod
    def due(config: TrainConfig, epoch: int) -> bool:
        """Whether `epoch` (from 1) is one the monitor estimates: every `monitor_every`-th, and the last."""
        every = config.monitor_every
        return every > 0 and (epoch % every == 0 or epoch == config.epochs)

    @torch.no_grad()
    def estimate(self, config: TrainConfig, generator: nn.Module, noise_dim: int, num_classes: int = 0) -> float:
        """Mean validation log-likelihood (nats) under a Parzen window on `config.monitor_samples` samples of
        `generator` (a conditional one's for labels 0, 1, 2, ... in turn)."""
        count = config.monitor_samples
        seeded = torch.Generator(device="cpu").manual_seed(MONITOR_NOISE_SEED)
        noise = sample_noise(count, noise_dim, config.noise, "cpu", generator=seeded).to(self.device)
        was_training = generator.training
        generator.eval()
        try:
            if num_classes:
                labels = torch.arange(count, device=self.device) % num_classes
                samples = generator(noise, labels)
            else:
                samples = generator(noise)
        finally:
            generator.train(was_training)
        ll = parzen_log_likelihood(samples.float().flatten(1), self.points, config.monitor_sigma, device=self.device)
        return float(ll.mean())


def best_monitored(history: Sequence[dict[str, Any]]) -> tuple[int, float] | None:
    """(epoch, estimate) of the best monitored epoch of `history` (the earliest of equal ones); None when none was
    monitored or no estimate is finite."""
    estimates = [(row[MONITOR_KEY], row["epoch"]) for row in history if MONITOR_KEY in row]
    monitored = [(estimate, -epoch) for estimate, epoch in estimates if math.isfinite(estimate)]
    if not monitored:
        return None
    estimate, negative_epoch = max(monitored)
    return -negative_epoch, estimate
