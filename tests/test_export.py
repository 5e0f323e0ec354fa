"""Exported generators (gan_core/export.py) and `gan-pipeline sample` on an export alone (pipelines/sampling.py):
ONNX under onnxruntime and TorchScript agree with PyTorch for an unconditional, a conditional and a mixture model;
the sampler, in a process where gan_core cannot be imported, draws the asked classes; a corrupt file is refused by
name. Every model is trained for real, briefly, on the digits training split."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_core.config import RuntimeOptions, default_train_config
from gan_core.export import PARITY_TOLERANCE, ExportError, check_parity, export_generator, verify_export
from gan_core.layout import checkpoint_file, export_files
from gan_core.models import sample_noise
from gan_core.sample import load_generator
from gan_core.train import train_gan
from pipelines.sampling import draw_noise, grid_image, open_export, sample
from tests.helpers import REPO_ROOT

# the sampler's process: gan_core and assets made unimportable (an import of either raises ImportError), then the CLI
NO_TRAINING_CODE = (
    "import sys; sys.modules['gan_core'] = None; sys.modules['assets'] = None; "
    "from pipelines.cli import main; code = main(sys.argv[1:]); "
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('gan_core', 'assets', 'dagster') "
    "and sys.modules[m] is not None); print('loaded:', loaded); sys.exit(code)"
)


def _export(tmp_path: Path, digits_train, digits_labels, model: str, **settings) -> tuple[Path, dict]:  # noqa: ANN001
    """Train `model` for 2 epochs on digits and export it; (checkpoint, export record)."""
    run_dir = tmp_path / model
    config = default_train_config(model, dataset="digits", epochs=2, **settings)
    options = RuntimeOptions(device="cpu", tensorboard=False, progress=False)
    train_gan(config, digits_train, run_dir, options, train_labels=digits_labels, num_classes=10)
    source = {"dataset": "digits", "experiment": model, "seed": 0}
    record = export_generator(checkpoint_file(run_dir), export_files(run_dir / "export"), source)
    return checkpoint_file(run_dir), record


@pytest.mark.parametrize(
    ("model", "settings", "inputs"),
    [
        ("paper_mlp", {}, ["z"]),
        ("paper_mlp_cond", {}, ["z", "labels"]),
        ("dcgan_cond", {}, ["z", "labels"]),
        ("paper_mlp_3g", {"ema_decay": 0.99}, ["z", "generator"]),
    ],
)
def test_onnx_and_torchscript_match_pytorch(tmp_path, digits_train, digits_labels, model, settings, inputs) -> None:
    checkpoint, record = _export(tmp_path, digits_train, digits_labels, model, **settings)
    parity = check_parity(checkpoint, record, count=300)
    # the stated tolerance (gan_core.export.PARITY_TOLERANCE: other kernels' summation order, far below a grey level)
    assert parity["onnx_max_abs_diff"] <= PARITY_TOLERANCE, parity
    assert parity["torchscript_max_abs_diff"] <= PARITY_TOLERANCE, parity
    metadata = record["metadata"]
    loaded = load_generator(checkpoint, "cpu")
    assert metadata["inputs"] == inputs
    assert metadata["noise_dim"] == loaded.noise_dim == 100 and metadata["noise"] == loaded.noise
    assert metadata["image_shape"] == [1, 8, 8]
    assert metadata["num_classes"] == (10 if "labels" in inputs else 0)
    assert metadata["n_generators"] == (3 if "generator" in inputs else 1)
    assert metadata["settings"]["model"] == model and metadata["settings"]["epochs"] == 2
    assert metadata["source"] == {"dataset": "digits", "experiment": model, "seed": 0}
    # the sampler reads the same metadata from each file on its own
    for path in (record["onnx"], record["torchscript"]):
        assert open_export(path).metadata == json.loads(json.dumps(metadata))


def test_sample_command_draws_the_asked_class_without_the_training_code(tmp_path, digits_train, digits_labels) -> None:
    checkpoint, record = _export(tmp_path, digits_train, digits_labels, "paper_mlp_cond")
    out = tmp_path / "grid.png"
    command = [sys.executable, "-c", NO_TRAINING_CODE, "sample", record["onnx"], "-n", "16", "--out", str(out)]
    completed = subprocess.run(
        [*command, "--label", "3", "--seed", "5"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("wrote 16 samples (1x8x8, class 3; noise seed 5) of digits/paper_mlp_cond")
    assert "loaded: []" in completed.stdout  # neither gan_core, assets nor dagster was imported
    from PIL import Image

    written = np.asarray(Image.open(out))
    # the same noise through the PyTorch generator for class 3, tiled the same way: the grid holds class 3's samples
    loaded = load_generator(checkpoint, "cpu")
    noise = torch.from_numpy(draw_noise(16, record["metadata"], seed=5))
    with torch.no_grad():
        class_3 = loaded.generator(noise, labels=torch.full((16,), 3)).numpy()
        class_5 = loaded.generator(noise, labels=torch.full((16,), 5)).numpy()
    expected, other = (np.asarray(grid_image(images)).astype(int) for images in (class_3, class_5))
    assert written.shape == expected.shape == (148, 148)  # 4 x 4 images of 8 + 1 pixels, enlarged 4 times
    assert np.abs(written.astype(int) - expected).max() <= 1  # one grey level: float32 kernels, then rounding
    # and not another class's: a 2-epoch model's classes differ by a few grey levels, more than the tolerance above
    assert np.abs(written.astype(int) - other).max() > 1


def test_sampler_noise_is_the_documented_distribution() -> None:
    """The sampler's numpy noise has the distribution the export names, as gan_core.models.sample_noise draws it."""
    for kind, bound in (("uniform", np.sqrt(3.0)), ("gaussian", None)):
        drawn = draw_noise(20_000, {"noise_dim": 10, "noise": kind}, seed=0)
        reference = sample_noise(20_000, 10, kind, "cpu", torch.Generator().manual_seed(0)).numpy()
        assert drawn.dtype == np.float32 and drawn.shape == (20_000, 10)
        # unit variance either way (the 20,000 x 10 draws' std within 2 %)
        assert abs(drawn.std() - 1) < 0.02 and abs(reference.std() - 1) < 0.02
        if bound is not None:
            assert drawn.min() >= -bound and drawn.max() <= bound


def test_sampler_refuses_bad_files_and_flags_in_one_line(tmp_path, digits_train, digits_labels) -> None:
    _, record = _export(tmp_path, digits_train, digits_labels, "paper_mlp")
    damaged = tmp_path / "damaged.onnx"
    data = bytearray(Path(record["onnx"]).read_bytes())
    damaged.write_bytes(bytes(data[: len(data) // 3]))
    truncated_script = tmp_path / "damaged.ts"
    truncated_script.write_bytes(Path(record["torchscript"]).read_bytes()[:-200])
    not_an_export = tmp_path / "plain.onnx"
    import onnx

    plain = onnx.load(record["onnx"])
    del plain.metadata_props[:]
    onnx.save(plain, str(not_an_export))
    cases = {
        str(damaged): f"{damaged}: not a readable ONNX or TorchScript generator",
        str(truncated_script): f"{truncated_script}: not a readable ONNX or TorchScript generator",
        str(not_an_export): f"{not_an_export}: an ONNX model without gan-pipeline metadata",
        str(tmp_path / "missing.onnx"): f"{tmp_path / 'missing.onnx'}: no such file",
    }
    gan_pipeline = str(Path(sys.executable).parent / "gan-pipeline")
    for path, expected in cases.items():
        out = tmp_path / "never.png"
        completed = subprocess.run(
            [gan_pipeline, "sample", path, "--out", str(out)], capture_output=True, text=True, timeout=300
        )
        assert completed.returncode == 2, completed.stderr
        assert completed.stderr.strip().splitlines() == [completed.stderr.strip()]  # one line
        assert completed.stderr.startswith(f"gan-pipeline sample: {expected}"), completed.stderr
        assert not out.exists()
    refused_flags = {
        ("--label", "3"): "is an unconditional generator; leave --label out",
        ("-n", "0"): "-n must be a positive number of samples",
    }
    for flags, expected in refused_flags.items():
        completed = subprocess.run(
            [gan_pipeline, "sample", record["onnx"], "--out", str(tmp_path / "x.png"), *flags],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO_ROOT,
        )
        assert completed.returncode == 2 and expected in completed.stderr, completed.stderr
    # a damaged export in the store is named by the check that guards it (bytes differ from the recorded hash)
    stored = Path(record["onnx"])
    stored.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(ExportError, match=f"exported generator {stored} is corrupt"):
        verify_export(record)


def test_mixture_sampling_uses_every_member(tmp_path, digits_train, digits_labels) -> None:
    """A mixture's export draws row i from member i % k, as gan_core.sample.generate does."""
    checkpoint, record = _export(tmp_path, digits_train, digits_labels, "paper_mlp_3g")
    exported = open_export(record["torchscript"])
    images = sample(exported, 6, seed=2)
    loaded = load_generator(checkpoint, "cpu")
    noise = torch.from_numpy(draw_noise(6, record["metadata"], seed=2))
    with torch.no_grad():
        members = [member(noise).numpy() for member in loaded.generator.generators]
    for row in range(6):
        assert np.abs(images[row] - members[row % 3][row]).max() <= PARITY_TOLERANCE
