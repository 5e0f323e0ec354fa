"""A small convolutional classifier per dataset: the offline feature space (penultimate layer) and class predictions
behind the modern metrics (no downloaded Inception weights)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gan_core.data import load_split, load_split_arrays
from gan_core.devices import resolve_device
from gan_core.storage import atomic_output

FEATURE_DIM = 128
CLASSIFIER_FORMAT = 1


class FeatureClassifier(nn.Module):
    """conv 32 -> pool -> conv 64 -> pool -> 128 features (ReLU) -> class logits; works from 8x8 to 48x48 inputs."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 64 * (height // 4) * (width // 4)
        self.features = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@dataclass(frozen=True)
class ClassifierResult:
    path: Path
    test_accuracy: float
    epochs: int
    seconds: float


def default_epochs(n_train: int) -> int:
    """About 60,000 images' worth of updates, at least 6 epochs (6 for MNIST, 51 for digits)."""
    return max(6, math.ceil(60_000 / max(1, n_train)))


def train_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    out_path: str | os.PathLike[str],
    num_classes: int,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> ClassifierResult:
    """Train with Adam and a cosine learning-rate decay (data on the device, index-sliced batches), save atomically,
    return the test accuracy."""
    dev = resolve_device(device)
    epochs = epochs or default_epochs(len(train_images))
    torch.manual_seed(seed)
    model = FeatureClassifier(tuple(train_images.shape[1:]), num_classes).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = train_images.to(dev), train_labels.to(dev)
    steps = epochs * math.ceil(len(images) / 128)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    started = time.perf_counter()
    shown = None if progress is None else not progress
    for epoch in tqdm(range(epochs), desc="feature classifier", unit="epoch", disable=shown, leave=False):
        model.train()
        order = torch.randperm(len(images), device=dev)
        for start in range(0, len(images), 128):
            index = order[start : start + 128]
            loss = nn.functional.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if log:
            log(f"classifier epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}")
    accuracy = float((predict(model, test_images).argmax(1) == test_labels.numpy()).mean())
    with atomic_output(out_path) as tmp:
        torch.save(
            {
                "format_version": CLASSIFIER_FORMAT,
                "image_shape": list(train_images.shape[1:]),
                "num_classes": num_classes,
                "state_dict": model.state_dict(),
                "test_accuracy": accuracy,
            },
            tmp,
        )
    return ClassifierResult(Path(out_path), accuracy, epochs, time.perf_counter() - started)


def train_dataset_classifier(
    dataset_file: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    num_classes: int,
    epochs: int,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> ClassifierResult:
    """`train_classifier` on a stored dataset's training split (gan_core.data), scored on its test split."""
    train_labels = torch.from_numpy(load_split_arrays(dataset_file, "train").labels)
    test_labels = torch.from_numpy(load_split_arrays(dataset_file, "test").labels)
    train, test = load_split(dataset_file, "train"), load_split(dataset_file, "test")
    return train_classifier(
        train, train_labels, test, test_labels, out_path, num_classes, epochs, seed, device, log, progress
    )


def load_classifier(path: str | os.PathLike[str], device: str = "auto") -> FeatureClassifier:
    """Rebuild a saved classifier (weights_only=True) in eval mode."""
    dev = resolve_device(device)
    state = torch.load(path, map_location=dev, weights_only=True)
    if state.get("format_version") != CLASSIFIER_FORMAT:
        raise ValueError(f"classifier file {path} is not of format {CLASSIFIER_FORMAT}")
    model = FeatureClassifier(tuple(state["image_shape"]), int(state["num_classes"]))
    model.load_state_dict(state["state_dict"])
    return model.to(dev).eval()


@torch.no_grad()
def _batched(model: FeatureClassifier, images: torch.Tensor | np.ndarray, fn: str, batch: int = 1000) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    tensor = torch.as_tensor(images, dtype=torch.float32)
    outputs = [getattr(model, fn)(tensor[i : i + batch].to(device)).float().cpu() for i in range(0, len(tensor), batch)]
    return torch.cat(outputs).numpy()


def predict(model: FeatureClassifier, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class probabilities, N x classes."""
    return torch.softmax(torch.from_numpy(_batched(model, images, "forward")), dim=1).numpy()


def embed(model: FeatureClassifier, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Penultimate-layer features, N x 128."""
    return _batched(model, images, "embed")
