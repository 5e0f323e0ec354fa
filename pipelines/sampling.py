"""`gan-pipeline sample MODEL_FILE`: samples from an exported generator file alone (gan_core/export.py wrote it).

This module needs numpy, Pillow and onnxruntime (an ONNX file) or torch (a TorchScript file), never the training
code: it imports nothing of gan_core or assets, so a consumer of the export runs it anywhere the file is. Everything
it needs to know comes from the file's own metadata: the noise size and distribution, the image shape, the classes of
a conditional model and the members of a mixture. The noise is drawn with numpy from `--seed`, so the same file and
seed give the same grid.
"""

from __future__ import annotations

import json
import math
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METADATA_KEY = "gan_pipeline"  # written by gan_core.export (the ONNX metadata_props key; TorchScript: <key>.json)
KNOWN_FORMATS = (1,)


class ExportFileError(ValueError):
    """The file is missing, corrupt or not a gan-pipeline generator export; the message names it."""


@dataclass(frozen=True)
class ExportedGenerator:
    """An export file opened for sampling: its metadata and a function from the input arrays to images."""

    path: Path
    kind: str  # "onnx" or "torchscript"
    metadata: dict[str, Any]
    run: Callable[[list[np.ndarray]], np.ndarray]

    @property
    def num_classes(self) -> int:
        return int(self.metadata["num_classes"])


def open_export(path: str | Path) -> ExportedGenerator:
    """Open an ONNX or TorchScript export (told apart by content, not by name); ExportFileError names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise ExportFileError(f"{path}: no such file; give the generator.onnx or generator.ts an export wrote")
    opened = _open_torchscript(path) if zipfile.is_zipfile(path) else _open_onnx(path)
    metadata = opened.metadata
    if metadata.get("format") not in KNOWN_FORMATS:
        raise ExportFileError(f"{path}: export format {metadata.get('format')!r} unknown; known: {list(KNOWN_FORMATS)}")
    return opened


def _open_onnx(path: Path) -> ExportedGenerator:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own error types for unparsable files
        raise ExportFileError(f"{path}: not a readable ONNX or TorchScript generator ({_first_line(error)})") from None
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise ExportFileError(f"{path}: an ONNX model without gan-pipeline metadata ({METADATA_KEY!r}); not an export")
    names = [item.name for item in session.get_inputs()]

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        return session.run(None, dict(zip(names, inputs, strict=True)))[0]

    return ExportedGenerator(path, "onnx", json.loads(text), run)


def _open_torchscript(path: Path) -> ExportedGenerator:
    import torch

    extra = {f"{METADATA_KEY}.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation note
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as error:  # torch raises RuntimeError or its own types for a damaged archive
        raise ExportFileError(f"{path}: not a readable ONNX or TorchScript generator ({_first_line(error)})") from None
    if not extra[f"{METADATA_KEY}.json"]:
        raise ExportFileError(f"{path}: a TorchScript module without gan-pipeline metadata; not an export")

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(array) for array in inputs)).numpy()

    return ExportedGenerator(path, "torchscript", json.loads(extra[f"{METADATA_KEY}.json"]), run)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def draw_noise(count: int, metadata: dict[str, Any], seed: int) -> np.ndarray:
    """`count` latent vectors as the export's metadata says (unit variance: uniform on +-sqrt(3), or N(0, 1))."""
    rng = np.random.default_rng(seed)
    shape = (count, int(metadata["noise_dim"]))
    if metadata["noise"] == "uniform":
        bound = math.sqrt(3.0)
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    if metadata["noise"] == "gaussian":
        return rng.standard_normal(shape, dtype=np.float32)
    raise ExportFileError(f"noise {metadata['noise']!r} unknown to this sampler; known: uniform, gaussian")


def sample(exported: ExportedGenerator, count: int, seed: int = 0, label: int | None = None) -> np.ndarray:
    """`count` images (N x C x H x W in [0, 1]); a conditional model's all of class `label`, or 0, 1, ... when None."""
    if count <= 0:
        raise ValueError(f"-n must be a positive number of samples, got {count}")
    classes = exported.num_classes
    if label is not None and not classes:
        raise ValueError(f"--label {label}: {exported.path} is an unconditional generator; leave --label out")
    if label is not None and not 0 <= label < classes:
        raise ValueError(f"--label {label} is not a class of {exported.path}: allowed 0..{classes - 1}")
    inputs = [draw_noise(count, exported.metadata, seed)]
    rows = np.arange(count, dtype=np.int64)
    if classes:
        inputs.append(np.full(count, label, np.int64) if label is not None else rows % classes)
    if int(exported.metadata.get("n_generators", 1)) > 1:
        inputs.append(rows % int(exported.metadata["n_generators"]))
    return np.clip(exported.run(inputs), 0.0, 1.0)


def grid_image(images: np.ndarray, columns: int | None = None, min_cell: int = 32) -> Any:
    """A PIL image of `images` tiled in rows of `columns` (default: a square), 1-pixel white gaps, each image
    enlarged (nearest neighbour) to at least `min_cell` pixels."""
    from PIL import Image

    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1, channels), np.float32)
    for index, image in enumerate(images):
        top, left = 1 + (index // columns) * (height + 1), 1 + (index % columns) * (width + 1)
        grid[top : top + height, left : left + width] = image.transpose(1, 2, 0)
    pixels = (grid * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    scale = max(1, math.ceil(min_cell / height))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def sample_command(model_file: str, count: int, out: str, label: int | None, seed: int) -> str:
    """Write a grid of `count` samples of `model_file` to `out` (PNG); returns the line to print."""
    exported = open_export(model_file)
    images = sample(exported, count, seed, label)
    out_path = Path(out)
    if out_path.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the grid is written as PNG; give a file name ending in .png")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial")
    grid_image(images).save(partial, format="PNG")
    partial.replace(out_path)  # never a half-written grid under the asked name
    meta = exported.metadata
    source = meta.get("source", {})
    what = f"class {label}" if label is not None else ("classes 0, 1, ... in turn" if exported.num_classes else "")
    origin = f"{source.get('dataset', '?')}/{source.get('experiment', '?')} seed {source.get('seed', '?')}"
    shape = "x".join(str(v) for v in meta["image_shape"])
    return (
        f"wrote {count} samples ({shape}{', ' + what if what else ''}; noise seed {seed}) of {origin} "
        f"from {exported.kind} {exported.path} to {out_path}"
    )
