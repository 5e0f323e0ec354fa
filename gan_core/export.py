"""A trained generator as files that run without this project: ONNX (for onnxruntime and any ONNX runtime) and
TorchScript (for `torch.jit.load`), each carrying what sampling needs to know.

Both take the latent noise `z` (N x noise_dim, float32, drawn as `noise` says), for a conditional model the class
`labels` (N, int64), for a mixture of generators the member drawing each row `generator` (N, int64), and return
`images` (N x C x H x W, float32 in [0, 1]). The metadata (`ExportMetadata`) is in the ONNX model's metadata_props and
in the TorchScript archive's extra file `gan_pipeline.json`: noise size and distribution, image shape, classes,
mixture size, and the settings, experiment and checkpoint the generator came from. `check_parity` runs both files on
the same noise as the PyTorch generator and reports the largest difference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan_core.layout import ExportFiles
from gan_core.models import sample_noise
from gan_core.sample import LoadedGenerator, asked_labels, generate_from_noise, generator_of_each, load_generator
from gan_core.storage import atomic_output

EXPORT_FORMAT = 1
METADATA_KEY = "gan_pipeline"  # the ONNX metadata_props key and (with .json) the TorchScript extra file
TORCHSCRIPT_METADATA_FILE = f"{METADATA_KEY}.json"
NOISE_DESCRIPTIONS = {
    "uniform": f"uniform on [-sqrt(3), sqrt(3)] = [-{math.sqrt(3):.6f}, {math.sqrt(3):.6f}] per coordinate",
    "gaussian": "standard normal N(0, 1) per coordinate",
}
# Largest |ONNX - PyTorch| and |TorchScript - PyTorch| pixel difference the parity check accepts. Why this much: the
# three run the same float32 graph with other kernels (onnxruntime's MLAS, oneDNN, OpenBLAS; AVX2 or AVX-512), whose
# summation orders differ by ~1e-7 relative per layer; measured: at most 4.8e-7 (digits, dcgan_cond, AMD EPYC). 1e-4 is
# 200 times that and still 1/39 of one 8-bit grey level (1/255): no difference a saved image can show.
PARITY_TOLERANCE = 1e-4


class ExportError(ValueError):
    """An export file that is missing, corrupt, or not a gan-pipeline generator; the message names the file."""


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """What a consumer of an exported generator needs, and where it came from."""

    noise_dim: int
    noise: str
    image_shape: list[int]
    num_classes: int
    n_generators: int
    settings: dict[str, Any]
    source: dict[str, Any]  # dataset, experiment, seed, run identity, checkpoint, weights hash
    format: int = EXPORT_FORMAT
    inputs: tuple[str, ...] = ("z",)
    noise_description: str = ""

    @classmethod
    def of(cls, loaded: LoadedGenerator, source: dict[str, Any]) -> ExportMetadata:
        inputs = (
            ("z",) + (("labels",) if loaded.num_classes else ()) + (("generator",) if loaded.n_generators > 1 else ())
        )
        return cls(
            noise_dim=loaded.noise_dim,
            noise=loaded.noise,
            image_shape=list(loaded.image_shape),
            num_classes=loaded.num_classes,
            n_generators=loaded.n_generators,
            settings=dict(loaded.config),
            source=source,
            inputs=inputs,
            noise_description=NOISE_DESCRIPTIONS[loaded.noise],
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


class ExportableGenerator(nn.Module):
    """The generator as one graph of positional tensors: a mixture computes every member and picks each row's (the
    same rows `GeneratorMixture` computes member by member, as a graph without data-dependent shapes)."""

    def __init__(self, loaded: LoadedGenerator) -> None:
        super().__init__()
        self.generator = loaded.generator
        self.conditional, self.mixture = loaded.num_classes > 0, loaded.n_generators > 1

    def forward(self, z: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        labels = extra[0] if self.conditional else None
        members = self.generator.generators if self.mixture else [self.generator]
        outputs = [member(z) if labels is None else member(z, labels) for member in members]
        if not self.mixture:
            return outputs[0]
        which = extra[-1]
        stacked = torch.stack(outputs)  # members x N x C x H x W
        return stacked[which, torch.arange(z.shape[0], device=z.device)]


def example_inputs(loaded: LoadedGenerator, count: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Noise (seeded), and the labels and members `gan_core.sample.generate` would use for `count` rows."""
    device = next(loaded.generator.parameters()).device
    noise = sample_noise(
        count, loaded.noise_dim, loaded.noise, device, torch.Generator(device=device).manual_seed(seed)
    )
    inputs = [noise]
    if loaded.num_classes:
        inputs.append(torch.from_numpy(asked_labels(count, loaded.num_classes)).to(device))
    if loaded.n_generators > 1:
        inputs.append(torch.from_numpy(generator_of_each(count, loaded.n_generators)).to(device))
    return tuple(inputs)


def export_generator(checkpoint_path: str | os.PathLike[str], files: ExportFiles, source: dict[str, Any]) -> dict:
    """Export the (averaged, when kept) generator of a checkpoint to `files.onnx` and `files.torchscript`, each
    written atomically; returns the files' SHA-256 and the metadata (what the export record stores)."""
    loaded = load_generator(checkpoint_path, "cpu")
    metadata = ExportMetadata.of(loaded, source)
    module = ExportableGenerator(loaded).eval()
    inputs = example_inputs(loaded, 8, seed=0)
    batch = torch.export.Dim("batch", min=1)
    # quiet: torch.jit.trace's deprecation note (TorchScript is one of the two formats asked for) and the ONNX
    # exporter's progress lines on stdout
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, inputs, check_trace=False)
        with atomic_output(files.torchscript) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_METADATA_FILE: metadata.to_json()})
        program = torch.onnx.export(
            module,
            inputs,
            input_names=list(metadata.inputs),
            output_names=["images"],
            # forward(z, *extra): torch.export binds the extra inputs as one tuple argument, when there are any
            dynamic_shapes=({0: batch}, tuple({0: batch} for _ in inputs[1:])) if len(inputs) > 1 else ({0: batch},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    import onnx

    proto = program.model_proto
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())
    proto.doc_string = f"gan-pipeline generator: z ({metadata.noise_description}) -> images in [0, 1]"
    with atomic_output(files.onnx) as tmp:
        onnx.save_model(proto, str(tmp))
    return {
        "onnx": str(files.onnx),
        "torchscript": str(files.torchscript),
        "onnx_sha256": file_sha256(files.onnx),
        "torchscript_sha256": file_sha256(files.torchscript),
        "metadata": json.loads(metadata.to_json()),  # plain JSON values, as a reader of the file gets them
    }


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_export(record: dict) -> None:
    """Raise ExportError naming the first export file of `record` that is missing or whose bytes changed."""
    for kind in ("onnx", "torchscript"):
        path = Path(record[kind])
        if not path.is_file():
            raise ExportError(f"exported generator {path} is missing; materialise exported_generator again")
        if file_sha256(path) != record[f"{kind}_sha256"]:
            raise ExportError(
                f"exported generator {path} is corrupt: its SHA-256 differs from the one recorded when it was "
                "written; materialise exported_generator again"
            )


def check_parity(checkpoint_path: str | os.PathLike[str], record: dict, count: int = 256, seed: int = 1) -> dict:
    """The largest pixel difference of the ONNX file under onnxruntime and of the TorchScript file against the
    PyTorch generator of `checkpoint_path`, on the same `count` noise vectors (and labels, members)."""
    import onnxruntime

    verify_export(record)
    loaded = load_generator(checkpoint_path, "cpu")
    inputs = example_inputs(loaded, count, seed)
    labels = inputs[1].numpy() if loaded.num_classes else None
    reference = generate_from_noise(loaded, inputs[0], labels)  # a mixture's rows from generator_of_each's members
    session = onnxruntime.InferenceSession(record["onnx"], providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    onnx_images = session.run(None, dict(zip(names, (tensor.numpy() for tensor in inputs), strict=True)))[0]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation note
        script_images = torch.jit.load(record["torchscript"], map_location="cpu")(*inputs).numpy()
    return {
        "count": count,
        "noise_seed": seed,
        "onnx_max_abs_diff": float(np.abs(onnx_images - reference).max()),
        "torchscript_max_abs_diff": float(np.abs(script_images - reference).max()),
        "tolerance": PARITY_TOLERANCE,
    }
