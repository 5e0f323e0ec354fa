"""Learned approximate inference (the paper's section 7): an encoder E that predicts the latent z from an image x,
trained after the generator has finished, for that fixed generator; or, for a bidirectional model (BiGAN / ALI,
gan_core.models.BidirectionalGenerator), the encoder it learned adversarially with its generator (`own_encoder`).

As the paper puts it: "training an auxiliary network to predict z given x ... for a fixed generator net after the
generator net has finished training" (its released code's `AdversaryPair` takes such an `inferer`). E is fitted by
mean squared error to pairs (G(z), z) drawn fresh every step, so it needs no real images and no retraining of G. It
is judged on real test images x by
- reconstructions G(E(x)): how close the generator comes to x from the inferred code (a figure and a pixel MSE);
- a linear probe: a logistic regression fitted on E(x) of training images, its accuracy on E(x) of test images,
  beside the same probe on raw pixels (how much class information the inferred code keeps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gan_core.models import sample_noise
from gan_core.sample import LoadedGenerator, asked_labels, generate_from_noise

# what the report's metrics table shows of a seed's learned inverse (beside that seed's sample metrics)
INFERENCE_COLUMNS = ("encoder_probe_accuracy", "pixel_probe_accuracy", "reconstruction_mse")


class LatentEncoder(nn.Module):
    """x -> ReLU 512 -> ReLU 512 -> z: an MLP over the pixels (any image size), the inverse the paper describes."""

    def __init__(self, image_shape: tuple[int, int, int], noise_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(image_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, noise_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _generated_pairs(loaded: LoadedGenerator, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch (G(z), z) of fresh noise, a conditional generator's for labels 0, 1, ... in turn."""
    noise = sample_noise(batch, loaded.noise_dim, loaded.noise, device)
    with torch.no_grad():
        if loaded.num_classes:
            labels = torch.as_tensor(asked_labels(batch, loaded.num_classes), device=device)
            return loaded.generator(noise, labels), noise
        return loaded.generator(noise), noise


def train_encoder(
    loaded: LoadedGenerator,
    steps: int,
    batch_size: int,
    seed: int,
    log: Callable[[str], None] | None = None,
) -> LatentEncoder:
    """E fitted to predict z from G(z) for the fixed generator of `loaded` (Adam 1e-3, `steps` batches of fresh
    noise, seeded by `seed`), in evaluation mode."""
    device = next(loaded.generator.parameters()).device
    torch.manual_seed(seed)
    encoder = LatentEncoder(loaded.image_shape, loaded.noise_dim).to(device)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    for step in range(steps):
        images, noise = _generated_pairs(loaded, batch_size, device)
        loss = (encoder(images) - noise).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if log and (step + 1) % max(1, steps // 4) == 0:
            log(f"encoder step {step + 1}/{steps}: latent MSE {loss.item():.4f}")
    return encoder.eval()


def own_encoder(loaded: LoadedGenerator) -> nn.Module | None:
    """The encoder a bidirectional model (BiGAN / ALI) learned with its generator, else None."""
    return getattr(loaded.generator, "encoder", None)


@torch.no_grad()
def latent_error(loaded: LoadedGenerator, encoder: nn.Module, count: int = 1000) -> float:
    """||E(G(z)) - z||^2 per latent dimension on `count` fresh draws of the noise."""
    images, noise = _generated_pairs(loaded, count, next(loaded.generator.parameters()).device)
    return float((encoder(images) - noise).pow(2).mean())


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """E(x) of `images` (N x C x H x W in [0, 1]) as an N x noise_dim float64 array."""
    device = next(encoder.parameters()).device
    codes = [encoder(images[i : i + batch].to(device, torch.float32)).cpu() for i in range(0, len(images), batch)]
    return torch.cat(codes).double().numpy()


def reconstruct(loaded: LoadedGenerator, codes: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """G(E(x)) from inferred codes (a conditional generator's for the given `labels`)."""
    return generate_from_noise(loaded, torch.as_tensor(codes, dtype=torch.float32), labels)


def probe_accuracy(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray
) -> float:
    """Test accuracy of a logistic regression fitted on standardised training features (lbfgs, up to 500 steps): how
    linearly the features separate the classes."""
    # imported here: scikit-learn costs every process that loads the code location (CLI, run workers) 0.6 s
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_features)
    probe = LogisticRegression(max_iter=500)
    probe.fit(scaler.transform(train_features), train_labels)
    return float(probe.score(scaler.transform(test_features), test_labels))


@dataclass(frozen=True)
class InferenceScores:
    """What a learned inverse is judged by (see the module's docstring)."""

    latent_mse: float  # ||E(G(z)) - z||^2 per dimension on fresh noise (1 for a guess of 0 with unit-variance noise)
    reconstruction_mse: float  # ||G(E(x)) - x||^2 per pixel on the test images
    encoder_probe_accuracy: float
    pixel_probe_accuracy: float
    probe_train_images: int
    seconds: float


def pixel_probe_accuracy(train: tuple[torch.Tensor, np.ndarray], test: tuple[torch.Tensor, np.ndarray]) -> float:
    """`probe_accuracy` on raw pixels of (images, labels) of the training and test splits: the encoder's baseline,
    the same for every generator of a dataset."""
    flat = [split[0].flatten(1).double().numpy() for split in (train, test)]
    return probe_accuracy(flat[0], train[1], flat[1], test[1])


def score_encoder(
    loaded: LoadedGenerator,
    encoder: nn.Module,
    train: tuple[torch.Tensor, np.ndarray],
    test: tuple[torch.Tensor, np.ndarray],
    pixel_accuracy: float,
    started: float,
) -> tuple[InferenceScores, np.ndarray]:
    """The scores of `encoder` on (images, labels) of the training split (the probe's fit) and the test split, beside
    the pixels' probe accuracy (`pixel_probe_accuracy` of the same splits), and the test images' reconstructions
    G(E(x))."""
    test_codes = encode(encoder, test[0])
    reconstructions = reconstruct(loaded, test_codes, test[1] if loaded.num_classes else None)
    pixels = test[0].numpy().reshape(len(test[0]), -1)
    scores = InferenceScores(
        latent_mse=latent_error(loaded, encoder),
        reconstruction_mse=float(np.mean((reconstructions.reshape(len(pixels), -1) - pixels) ** 2)),
        encoder_probe_accuracy=probe_accuracy(encode(encoder, train[0]), train[1], test_codes, test[1]),
        pixel_probe_accuracy=pixel_accuracy,
        probe_train_images=len(train[0]),
        seconds=time.perf_counter() - started,
    )
    return scores, reconstructions
