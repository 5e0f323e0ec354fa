"""The dataset HDF5 format: one file per dataset with `train`, `valid` and `test` groups.

Layout (format version 1):
    /<split>/images   uint8, N x C x H x W, chunked and gzip-compressed
    /<split>/labels   int64, N
    attrs: format_version, dataset, image_shape, source_checksums (JSON), split_definition (JSON), content_hash

The content hash covers the arrays and the descriptive attributes (not the HDF5 bytes), so rewriting identical data
gives the identical hash and downstream assets stay up to date.
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

from gan_core.storage import atomic_output

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class DatasetFileError(ValueError):
    """A dataset file is missing, unreadable or does not follow the format."""


@dataclass(frozen=True)
class SplitArrays:
    """Images (uint8, N x C x H x W) and integer labels of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels shape {self.labels.shape} does not match {self.images.shape[0]} images")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset file declares about itself."""

    path: Path
    dataset: str
    image_shape: tuple[int, int, int]
    split_sizes: dict[str, int]
    source_checksums: dict[str, str]
    split_definition: dict[str, Any]
    content_hash: str
    format_version: int


def content_hash(splits: dict[str, SplitArrays], attrs: dict[str, Any]) -> str:
    """SHA-256 over the split arrays (shape, dtype, bytes) and the JSON of the descriptive attributes."""
    digest = hashlib.sha256(json.dumps(attrs, sort_keys=True, default=str).encode())
    for name in sorted(splits):
        for array in (splits[name].images, splits[name].labels):
            digest.update(f"{name}|{array.dtype}|{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write_dataset_h5(
    path: str | os.PathLike[str],
    dataset: str,
    splits: dict[str, SplitArrays],
    source_checksums: dict[str, str],
    split_definition: dict[str, Any],
) -> str:
    """Write the dataset file atomically and return its content hash."""
    missing = [name for name in SPLITS if name not in splits]
    if missing:
        raise ValueError(f"dataset {dataset!r} lacks split(s) {missing}")
    shapes = {tuple(split.images.shape[1:]) for split in splits.values()}
    if len(shapes) != 1:
        raise ValueError(f"dataset {dataset!r} has splits of different image shapes: {sorted(shapes)}")
    image_shape = shapes.pop()
    attrs = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "image_shape": list(image_shape),
        "source_checksums": source_checksums,
        "split_definition": split_definition,
    }
    digest = content_hash(splits, attrs)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        for key, value in attrs.items():
            handle.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
        handle.attrs["content_hash"] = digest
        for name in SPLITS:
            group = handle.create_group(name)
            images = splits[name].images
            chunk_rows = max(1, min(len(images), (1 << 20) // max(1, int(np.prod(image_shape)))))
            group.create_dataset(
                "images",
                data=images,
                chunks=(chunk_rows, *image_shape) if len(images) else None,
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            group.create_dataset("labels", data=splits[name].labels.astype(np.int64))
    return digest


def read_dataset_info(path: str | os.PathLike[str]) -> DatasetInfo:
    """Open a dataset file and check its structure; raise DatasetFileError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"dataset file {path} does not exist; materialise the preprocessed dataset first")
    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
            required = ("format_version", "dataset", "image_shape", "content_hash")
            absent = [key for key in required if key not in attrs]
            if absent:
                raise DatasetFileError(f"dataset file {path} lacks attribute(s) {absent}: not a gan-pipeline file")
            if int(attrs["format_version"]) != FORMAT_VERSION:
                raise DatasetFileError(
                    f"dataset file {path} has format_version {attrs['format_version']}, expected {FORMAT_VERSION}"
                )
            image_shape = tuple(int(v) for v in json.loads(attrs["image_shape"]))
            sizes = {}
            for name in SPLITS:
                if name not in handle or "images" not in handle[name] or "labels" not in handle[name]:
                    raise DatasetFileError(f"dataset file {path} lacks the group /{name} with images and labels")
                images, labels = handle[name]["images"], handle[name]["labels"]
                if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != image_shape:
                    raise DatasetFileError(
                        f"dataset file {path}: /{name}/images is {images.dtype} {images.shape}, "
                        f"expected uint8 N x {' x '.join(map(str, image_shape))}"
                    )
                if labels.shape != (images.shape[0],):
                    raise DatasetFileError(
                        f"dataset file {path}: /{name}/labels has shape {labels.shape}, expected ({images.shape[0]},)"
                    )
                sizes[name] = int(images.shape[0])
    except DatasetFileError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise DatasetFileError(f"dataset file {path} is unreadable or not HDF5: {error}") from error
    return DatasetInfo(
        path=path,
        dataset=str(attrs["dataset"]),
        image_shape=image_shape,  # type: ignore[arg-type]
        split_sizes=sizes,
        source_checksums=json.loads(attrs.get("source_checksums", "{}")),
        split_definition=json.loads(attrs.get("split_definition", "{}")),
        content_hash=str(attrs["content_hash"]),
        format_version=int(attrs["format_version"]),
    )


def load_split_arrays(path: str | os.PathLike[str], split: str) -> SplitArrays:
    """Read one split's raw uint8 images and labels."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    read_dataset_info(path)
    with h5py.File(path, "r") as handle:
        return SplitArrays(images=handle[split]["images"][()], labels=handle[split]["labels"][()])


def load_split(
    path: str | os.PathLike[str],
    split: str,
    device: str | torch.device = "cpu",
    limit: int | None = None,
) -> torch.Tensor:
    """One split as a float32 tensor in [0, 1], N x C x H x W, on `device` (the first `limit` images if given)."""
    images = load_split_arrays(path, split).images
    if limit is not None:
        images = images[:limit]
    return torch.from_numpy(images).to(device=device, dtype=torch.float32).div_(255.0)
