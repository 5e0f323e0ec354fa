"""What watching and shipping cost: training with TensorBoard events against without, side by side in one run, and
the export's time, file sizes and parity for each model family.

    python bench/serving.py [--epochs 20] [--repeats 3] [--out bench/results/serving.json]

Training: `paper_mlp` on the digits training split (scikit-learn's bundled 8x8 digits), the digits recipe, CPU, the
same run with `RuntimeOptions(tensorboard=True)` (scalars every epoch, a 64-sample grid every 5th) and `False`,
alternating which goes first, after one warm-up run, best of `--repeats`; printed as the ratio of the two wall times
and of the epochs' own time. The weights of both are compared (they must be identical: events draw from their own
generator). Export: each model trained 2 epochs, then `gan_core.export.export_generator` and `check_parity` on 256
noise vectors.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_json
from sklearn.datasets import load_digits

from gan_core.checkpoint import checkpoint_weights_hash
from gan_core.config import RuntimeOptions, default_train_config
from gan_core.export import check_parity, export_generator
from gan_core.layout import checkpoint_file, export_files
from gan_core.train import train_gan

EXPORTED_MODELS = {"paper_mlp": {}, "paper_mlp_cond": {}, "dcgan": {}, "dcgan_cond": {}, "paper_mlp_3g": {}}


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    return torch.tensor(bunch.images[:, None] / 16.0, dtype=torch.float32), torch.tensor(bunch.target)


def training_overhead(images: torch.Tensor, epochs: int, repeats: int) -> dict:
    config = default_train_config("paper_mlp", dataset="digits", epochs=epochs)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    in_epochs: dict[bool, list[float]] = {True: [], False: []}  # the epochs' own time (history), without set-up
    hashes: dict[bool, str] = {}
    train_gan(config, images, tempfile.mkdtemp(), RuntimeOptions(device="cpu", progress=False))  # warm imports
    for repeat in range(repeats):
        for events in (True, False) if repeat % 2 == 0 else (False, True):  # each first half the time
            with tempfile.TemporaryDirectory() as scratch:
                started = time.perf_counter()
                options = RuntimeOptions(device="cpu", progress=False, tensorboard=events)
                result = train_gan(config, images, scratch, options)
                seconds[events].append(time.perf_counter() - started)
                in_epochs[events].append(sum(record["seconds"] for record in result.history))
                hashes[events] = checkpoint_weights_hash(checkpoint_file(scratch))
    best = {events: min(values) for events, values in seconds.items()}
    return {
        "epochs": epochs,
        "seconds_with_events": best[True],
        "seconds_without": best[False],
        "ratio": best[True] / best[False],
        "epoch_time_ratio": min(in_epochs[True]) / min(in_epochs[False]),
        "weights_identical": hashes[True] == hashes[False],
        "all_seconds": {str(k): v for k, v in seconds.items()},
    }


def exports(images: torch.Tensor, labels: torch.Tensor) -> dict:
    results = {}
    for model, settings in EXPORTED_MODELS.items():
        with tempfile.TemporaryDirectory() as scratch:
            config = default_train_config(model, dataset="digits", epochs=2, **settings)
            options = RuntimeOptions(device="cpu", progress=False, tensorboard=False)
            train_gan(config, images, scratch, options, train_labels=labels, num_classes=10)
            started = time.perf_counter()
            record = export_generator(checkpoint_file(scratch), export_files(Path(scratch) / "export"), {})
            export_seconds = time.perf_counter() - started
            started = time.perf_counter()
            parity = check_parity(checkpoint_file(scratch), record)
            results[model] = {
                "export_seconds": export_seconds,
                "parity_seconds": time.perf_counter() - started,
                "onnx_bytes": Path(record["onnx"]).stat().st_size,
                "torchscript_bytes": Path(record["torchscript"]).stat().st_size,
                **parity,
            }
    return results


def cpu_model() -> str:
    """The CPU's model name (Linux), else what platform says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serving.json")
    args = parser.parse_args()
    images, labels = digits()
    overhead = training_overhead(images, args.epochs, args.repeats)
    print(
        f"training {args.epochs} epochs, best of {args.repeats}: with TensorBoard events "
        f"{overhead['seconds_with_events']:.2f} s, without {overhead['seconds_without']:.2f} s, "
        f"ratio {overhead['ratio']:.3f} (the epochs' own time: {overhead['epoch_time_ratio']:.3f}); "
        f"weights identical: {overhead['weights_identical']}"
    )
    exported = exports(images, labels)
    for model, row in exported.items():
        print(
            f"{model:15} export {row['export_seconds']:.2f} s, ONNX {row['onnx_bytes'] / 1024:.0f} KiB, TorchScript "
            f"{row['torchscript_bytes'] / 1024:.0f} KiB; max |diff| ONNX {row['onnx_max_abs_diff']:.2e}, "
            f"TorchScript {row['torchscript_max_abs_diff']:.2e} (tolerance {row['tolerance']:g})"
        )
    machine = {"cpu": cpu_model(), "torch": torch.__version__, "numpy": np.__version__}
    write_json(args.out, {"machine": machine, "training": overhead, "exports": exported})


if __name__ == "__main__":
    main()
