"""Short training runs whose weights and samples are pinned in `short_runs.json` (recorded before the issue-12
refactor at commit b16a6e1). `python tests/golden/short_runs.py --record` rewrites the JSON; the test in
tests/test_behaviour_pinned.py recomputes and compares. The runs cover every update rule, loss and recipe."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

GOLDEN = Path(__file__).with_name("short_runs.json")

RUNS: dict[str, dict[str, Any]] = {
    "paper_mlp_simultaneous": {"model": "paper_mlp", "epochs": 3, "max_train_images": 600},
    "paper_mlp_alternating_minimax_gaussian": {
        "model": "paper_mlp",
        "loss": "minimax",
        "update": "alternating",
        "d_steps": 2,
        "noise": "gaussian",
        "epochs": 2,
        "max_train_images": 800,
    },
    "dcgan_recipe": {"model": "dcgan", "epochs": 2, "max_train_images": 400},
    "paper_mlp_wgan_gp_recipe": {"model": "paper_mlp", "loss": "wgan_gp", "epochs": 1, "max_train_images": 1000},
    "paper_mlp_bf16": {"model": "paper_mlp", "epochs": 2, "max_train_images": 400, "bf16": True},
}


def environment() -> dict[str, str]:
    """What the pinned numbers depend on besides the code: torch's version and the CPU's vector instructions."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def digits_train_images(scratch: Path) -> torch.Tensor:
    from gan_core.data import load_split, write_dataset_h5
    from gan_core.sources import build_splits, fetch_raw

    raw = scratch / "raw"
    manifest = fetch_raw("digits", raw)
    path = scratch / "digits.h5"
    write_dataset_h5(path, "digits", build_splits("digits", raw), manifest["files"], {})
    return load_split(path, "train")


def run_all(scratch: Path) -> dict[str, dict[str, str]]:
    """Train every pinned run on the CPU with one thread; return each one's weights hash and 200-sample hash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thread count can change reduction order
    try:
        return _run_all(scratch)
    finally:
        torch.set_num_threads(threads)


def _run_all(scratch: Path) -> dict[str, dict[str, str]]:
    from gan_core.sample import generate, load_generator
    from gan_core.train import RuntimeOptions, checkpoint_weights_hash, default_train_config, train_gan

    images = digits_train_images(scratch)
    out: dict[str, dict[str, str]] = {}
    for name, settings in RUNS.items():
        settings = dict(settings)
        config = default_train_config(settings.pop("model"), settings.pop("loss", "non_saturating"), **settings)
        result = train_gan(config, images, scratch / name, RuntimeOptions(device="cpu", progress=False))
        samples = generate(load_generator(result.checkpoint_path, "cpu"), 200, seed=0)
        out[name] = {
            "weights": checkpoint_weights_hash(result.checkpoint_path),
            "samples": hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest(),
        }
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = run_all(Path(tmp))
    payload = {"environment": environment(), "runs": runs}
    if "--record" in sys.argv:
        GOLDEN.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(json.dumps(payload, indent=2))
