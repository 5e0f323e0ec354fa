"""Drawing samples from a trained generator, and the samples HDF5 file.

Sampling is deterministic: the noise comes from its own seeded torch.Generator, so the same checkpoint and seed give
the same samples whatever else used the global random state.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from gan_core.checkpoint import load_checkpoint
from gan_core.devices import resolve_device
from gan_core.models import build_model_pair, sample_noise
from gan_core.storage import atomic_output

SAMPLES_FORMAT = 1


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator in eval mode with what sampling needs to know about it."""

    generator: nn.Module
    noise_dim: int
    noise: str
    image_shape: tuple[int, int, int]
    config: dict[str, Any]
    num_classes: int = 0  # > 0: conditional; samples are drawn for asked labels
    n_generators: int = 1  # > 1: a mixture; sample i comes from generator i % n_generators


def generator_of_each(count: int, n_generators: int) -> np.ndarray:
    """Which generator of a mixture draws each of `count` samples: 0, 1, ..., k - 1, 0, 1, ..."""
    return np.arange(count, dtype=np.int64) % n_generators


def asked_labels(count: int, num_classes: int) -> np.ndarray:
    """The labels a conditional model's `count` samples are drawn for: 0, 1, ..., num_classes - 1, 0, 1, ...
    (every class equally often, the same for every checkpoint)."""
    return np.arange(count, dtype=np.int64) % num_classes


def load_generator(checkpoint_path: str | os.PathLike[str], device: str | torch.device = "auto") -> LoadedGenerator:
    """Rebuild the generator stored in a training checkpoint (loaded with weights_only=True)."""
    dev = resolve_device(str(device))
    state = load_checkpoint(checkpoint_path, dev)
    config = state["config"]
    image_shape = tuple(int(v) for v in state["image_shape"])
    num_classes = int(state.get("num_classes", 0))
    n_generators = int(config.get("n_generators", 1))
    generator = build_model_pair(config["model"], image_shape, num_classes, n_generators).generator  # type: ignore[arg-type]
    generator.load_state_dict(state.get("generator_average") or state["generator"])  # the average when kept
    return LoadedGenerator(
        generator.to(dev).eval(),
        int(state["noise_dim"]),
        config["noise"],
        image_shape,  # type: ignore[arg-type]
        config,
        num_classes,
        n_generators,
    )


def _run(loaded: LoadedGenerator, noise: torch.Tensor, labels: torch.Tensor | None, first: int) -> torch.Tensor:
    """The generator on `noise` (rows `first`.. of a draw): for asked labels, and a mixture's member per row."""
    kwargs: dict[str, Any] = {}
    if loaded.num_classes:
        kwargs["labels"] = labels
    if loaded.n_generators > 1:
        which = generator_of_each(first + len(noise), loaded.n_generators)[first:]
        kwargs["which"] = torch.from_numpy(which).to(noise.device)
    return loaded.generator(noise, **kwargs)


@torch.no_grad()
def generate(loaded: LoadedGenerator, count: int, seed: int, batch_size: int = 1000) -> np.ndarray:
    """`count` samples (float32, N x C x H x W in [0, 1]) from noise seeded by `seed`; a conditional model's are
    drawn for `asked_labels(count, num_classes)`."""
    if count <= 0:
        raise ValueError(f"sample count must be positive, got {count}")
    device = next(loaded.generator.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    labels = torch.from_numpy(asked_labels(count, loaded.num_classes)).to(device) if loaded.num_classes else None
    out = np.empty((count, *loaded.image_shape), dtype=np.float32)
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        noise = sample_noise(rows, loaded.noise_dim, loaded.noise, device, generator=rng)
        batch = _run(loaded, noise, None if labels is None else labels[start : start + rows], start)
        out[start : start + rows] = batch.float().cpu().numpy()
    return out


@torch.no_grad()
def generate_from_noise(loaded: LoadedGenerator, noise: torch.Tensor, labels: np.ndarray | None = None) -> np.ndarray:
    """Samples for given latent vectors (e.g. interpolations); a conditional model's for `labels` (default:
    `asked_labels`)."""
    device = next(loaded.generator.parameters()).device
    if loaded.num_classes:
        labels = asked_labels(len(noise), loaded.num_classes) if labels is None else labels
    asked = None if labels is None else torch.as_tensor(labels, device=device)
    return _run(loaded, noise.to(device), asked, 0).float().cpu().numpy()


def samples_hash(samples: np.ndarray) -> str:
    """SHA-256 of the sample array's shape, dtype and bytes."""
    digest = hashlib.sha256(f"{samples.dtype}|{samples.shape}".encode())
    digest.update(np.ascontiguousarray(samples).tobytes())
    return digest.hexdigest()


def write_samples_h5(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    seed: int,
    attrs: dict[str, Any],
    labels: np.ndarray | None = None,
    generators: np.ndarray | None = None,
) -> str:
    """Write samples (float32) with their seed, provenance attributes, (conditional models) the labels they were
    drawn for and (mixtures) the generator that drew each, atomically; return their content hash."""
    digest = samples_hash(samples)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        if labels is not None:
            handle.create_dataset("labels", data=np.asarray(labels, np.int64))
        if generators is not None:
            handle.create_dataset("generators", data=np.asarray(generators, np.int64))
        handle.create_dataset(
            "samples",
            data=samples,
            chunks=(min(len(samples), 1000), *samples.shape[1:]),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        handle.attrs["format_version"] = SAMPLES_FORMAT
        handle.attrs["seed"] = seed
        handle.attrs["content_hash"] = digest
        handle.attrs["provenance"] = json.dumps(attrs, sort_keys=True, default=str)
    return digest


def write_checkpoint_samples(
    path: str | os.PathLike[str],
    checkpoint_path: str | os.PathLike[str],
    count: int,
    seed: int,
    provenance: dict[str, Any],
    batch_size: int = 1000,
    device: str | torch.device = "auto",
) -> str:
    """Draw `count` samples from the generator of `checkpoint_path` (noise seeded by `seed`; a conditional model's
    for `asked_labels`, a mixture's with each sample's generator) and write them to `path` with `provenance`; returns
    the samples' content hash."""
    loaded = load_generator(checkpoint_path, device)
    samples = generate(loaded, count, seed, batch_size)
    labels = asked_labels(count, loaded.num_classes) if loaded.num_classes else None
    members = generator_of_each(count, loaded.n_generators) if loaded.n_generators > 1 else None
    return write_samples_h5(path, samples, seed, provenance, labels, members)


def samples_per_class(checkpoint_path: str | os.PathLike[str], per_class: int = 10) -> np.ndarray:
    """A conditional generator's samples, `per_class` for each class in turn (class 0 first), from noise seed 0: the
    rows of a per-class grid."""
    loaded = load_generator(checkpoint_path, "cpu")
    rows = np.repeat(np.arange(loaded.num_classes), per_class)
    noise = sample_noise(len(rows), loaded.noise_dim, loaded.noise, "cpu", torch.Generator().manual_seed(0))
    return generate_from_noise(loaded, noise, rows)


def read_samples_h5(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """(samples, attributes) of a samples file; a clear error names a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file {path} does not exist; materialise generated_samples first")
    try:
        with h5py.File(path, "r") as handle:
            samples = handle["samples"][()]
            attrs = {key: handle.attrs[key] for key in handle.attrs}
    except (OSError, KeyError) as error:
        raise ValueError(f"samples file {path} is unreadable or has no /samples dataset: {error}") from error
    attrs["provenance"] = json.loads(attrs.get("provenance", "{}"))
    return samples, attrs


def _read_optional(path: str | os.PathLike[str], name: str) -> np.ndarray | None:
    with h5py.File(path, "r") as handle:
        return handle[name][()] if name in handle else None


def read_sample_labels(path: str | os.PathLike[str]) -> np.ndarray | None:
    """The labels a conditional model's samples were drawn for (None for an unconditional model's)."""
    return _read_optional(path, "labels")


def read_sample_generators(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Which generator of a mixture drew each sample (None for a single generator's samples)."""
    return _read_optional(path, "generators")
