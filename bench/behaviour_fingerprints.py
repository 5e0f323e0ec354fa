"""Weights and sample hashes of short digits runs covering every update rule, loss and recipe, batched seeds, the
conditional and the multi-player models, bf16 and the annealed learning rate: run it before and after a refactor, on
one machine, and compare the two JSON files (they must be equal byte for byte).

    .venv/bin/python bench/behaviour_fingerprints.py --out before.json     # on the old commit
    .venv/bin/python bench/behaviour_fingerprints.py --out after.json      # on the new one
    cmp before.json after.json

The runs use one thread (the thread count can change reduction order) and the CPU. This is wider than the golden pins
(tests/golden/short_runs.py, five runs compared across machines within a tolerance) and exact only on one machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from gan_core.checkpoint import checkpoint_weights_hash
    from gan_core.config import RuntimeOptions, default_train_config
except ImportError:  # before gan_core/train.py was split (2026-12-02)
    from gan_core.train import RuntimeOptions, checkpoint_weights_hash, default_train_config
try:
    from gan_core.train import train_seeds
except ImportError:  # before one loop served one seed and many (2026-12-02)
    from gan_core.batched import train_seeds
from gan_core.data import load_split, load_split_arrays, write_dataset_h5
from gan_core.sample import generate, load_generator
from gan_core.sources import build_splits, fetch_raw, get_dataset_spec
from gan_core.train import train_gan

# name -> (model, loss, default_train_config overrides; "dataset" applies that dataset's recipe)
RUNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "simultaneous_paper_sgd": ("paper_mlp", "non_saturating", {"epochs": 2, "max_train_images": 400}),
    "alternating_minimax_gaussian": (
        "paper_mlp",
        "minimax",
        {"epochs": 2, "max_train_images": 400, "update": "alternating", "d_steps": 2, "noise": "gaussian"},
    ),
    "hinge_recipe": ("paper_mlp", "hinge", {"epochs": 2, "max_train_images": 400}),
    "wgan_gp_recipe": ("paper_mlp", "wgan_gp", {"epochs": 1, "max_train_images": 600}),
    "dcgan_recipe": ("dcgan", "non_saturating", {"epochs": 1, "max_train_images": 200}),
    "digits_recipe_ema": ("paper_mlp", "non_saturating", {"epochs": 2, "max_train_images": 400, "dataset": "digits"}),
    "bf16": ("paper_mlp", "non_saturating", {"epochs": 1, "max_train_images": 400, "bf16": True}),
    "lr_anneal": ("paper_mlp", "non_saturating", {"epochs": 2, "max_train_images": 400, "lr_anneal_fraction": 0.5}),
    "conditional": ("paper_mlp_cond", "non_saturating", {"epochs": 2, "max_train_images": 400}),
    "three_generators": ("paper_mlp_3g", "non_saturating", {"epochs": 2, "max_train_images": 400}),
    "three_discriminators": ("paper_mlp_3d", "non_saturating", {"epochs": 2, "max_train_images": 400}),
}
BATCHED_SEEDS = (0, 1, 2)
SAMPLE_COUNT = 200


def digits(scratch: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits training split (images in [0, 1], labels) through the project's own dataset code."""
    manifest = fetch_raw("digits", scratch / "raw")
    path = scratch / "digits.h5"
    splits = build_splits("digits", scratch / "raw")
    write_dataset_h5(path, "digits", splits, manifest["files"], get_dataset_spec("digits").split_definition)
    return load_split(path, "train"), torch.from_numpy(load_split_arrays(path, "train").labels)


def fingerprint(checkpoint: Path) -> dict[str, str]:
    samples = generate(load_generator(checkpoint, "cpu"), SAMPLE_COUNT, seed=0)
    return {
        "weights": checkpoint_weights_hash(checkpoint),
        "samples": hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON of fingerprints")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = RuntimeOptions(device="cpu", progress=False)
    found: dict[str, Any] = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        images, labels = digits(scratch)
        for name, (model, loss, settings) in RUNS.items():
            settings = dict(settings)
            config = default_train_config(model, loss, settings.pop("dataset", None), **settings)
            result = train_gan(config, images, scratch / name, options, train_labels=labels, num_classes=10)
            found[name] = fingerprint(result.checkpoint_path)
            print(name, found[name]["weights"][:16], flush=True)
        configs = [
            default_train_config("paper_mlp", epochs=2, max_train_images=400, seed=seed) for seed in BATCHED_SEEDS
        ]
        results = train_seeds(configs, images, [scratch / f"batched_{s}" for s in BATCHED_SEEDS], options)
        for seed, result in zip(BATCHED_SEEDS, results, strict=True):
            found[f"batched_seed_{seed}"] = fingerprint(result.checkpoint_path)
            print(f"batched_seed_{seed}", found[f"batched_seed_{seed}"]["weights"][:16], flush=True)
    args.out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
