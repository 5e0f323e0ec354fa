"""Short training runs whose weights and samples are pinned in `short_runs.json`, one recording per CPU capability
(first recorded before the issue-12 refactor at commit b16a6e1). The runs cover every update rule, loss and recipe.

A recording holds, per run, the SHA-256 of the weights and of 200 samples, and a probe: the values of a fixed set of
positions in every weight tensor (after training and at initialisation) and in the samples.
`tests/test_behaviour_pinned.py` recomputes the runs and compares them with the recording of this machine's
environment (torch build, CPU vector instructions, architecture) bit for bit, or, where none matches, with the
nearest recording within `TOLERANCE`: other kernels sum in another order, which moves the weights by a tiny fraction
of what training moved them, while a changed setting moves them by a large one.

    python tests/golden/short_runs.py             # print this machine's fingerprints and their distance to the pins
    python tests/golden/short_runs.py --record    # add (or replace) this environment's recording
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from dataclasses import dataclass
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

# The largest allowed distance to the nearest recording when no recording matches this machine (see `distance`),
# set between two measurements on an AMD EPYC (AVX2; bench/RESULTS.md, "Behaviour pins"): the same runs on other
# kernels (ATEN_CPU_CAPABILITY=default, oneDNN limited to SSE4.1) moved by at most 1.5e-5 (the paper MLP runs),
# 1.4e-3 (dcgan, bf16) and 8.8e-3 (WGAN-GP, the most chaotic); a learning rate 5 % off moved them by 0.05 to 0.11,
# one epoch less by 0.3 or more, another seed by 1 to 800.
TOLERANCE: dict[str, float] = {
    "paper_mlp_simultaneous": 0.01,
    "paper_mlp_alternating_minimax_gaussian": 0.01,
    "dcgan_recipe": 0.02,
    "paper_mlp_wgan_gp_recipe": 0.04,
    "paper_mlp_bf16": 0.02,
}

# Vector-instruction levels torch reports (torch.backends.cpu.get_cpu_capability), in order of width: the nearest
# recording to a machine is the one whose level is closest (same torch build and architecture first).
CAPABILITY_ORDER = ("DEFAULT", "ZVECTOR", "VSX", "SVE128", "SVE256", "AVX2", "AVX512")
PROBE_POSITIONS = 64  # values probed per weight tensor
SAMPLE_COUNT = 200


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


def _probe_weights(parts: dict[str, dict[str, torch.Tensor]]) -> list[float]:
    """The values at `PROBE_POSITIONS` evenly spaced positions of every weight tensor, in a fixed order (batch norm's
    running statistics left out: they follow the data, not the optimiser, and would hide a changed update)."""
    values: list[float] = []
    for part in ("generator", "discriminator", "generator_average"):
        for key, tensor in sorted(parts.get(part, {}).items()):
            if not tensor.is_floating_point() or key.rsplit(".", 1)[-1].startswith("running_"):
                continue
            flat = tensor.detach().cpu().double().flatten()
            positions = np.linspace(0, flat.numel() - 1, min(PROBE_POSITIONS, flat.numel())).astype(np.int64)
            values += [float(f"{v:.9g}") for v in flat[torch.from_numpy(positions)].tolist()]
    return values


def _initial_weights(config: Any, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """The run's weights before its first update, built as `train_gan` builds them."""
    from gan_core.updates import Players

    torch.manual_seed(config.seed)
    players = Players.build(config, images[: config.max_train_images or None].to(torch.float32).contiguous())
    parts = {"generator": players.generator.state_dict(), "discriminator": players.discriminator.state_dict()}
    if players.average is not None:
        parts["generator_average"] = players.average.state_dict()
    return parts


def fingerprint(name: str, images: torch.Tensor, scratch: Path, **changes: Any) -> dict[str, Any]:
    """Train pinned run `name` (its settings with `changes` applied) on the CPU and return its hashes and probes."""
    from gan_core.checkpoint import checkpoint_weights_hash, load_checkpoint
    from gan_core.config import RuntimeOptions, default_train_config
    from gan_core.sample import generate, load_generator
    from gan_core.train import train_gan

    settings = {**RUNS[name], **changes}
    config = default_train_config(settings.pop("model"), settings.pop("loss", "non_saturating"), **settings)
    initial = _probe_weights(_initial_weights(config, images))
    result = train_gan(config, images, scratch / name, RuntimeOptions(device="cpu", progress=False))
    samples = generate(load_generator(result.checkpoint_path, "cpu"), SAMPLE_COUNT, seed=0)
    flat_samples = np.ascontiguousarray(samples).astype(np.float64).ravel()
    positions = np.linspace(0, flat_samples.size - 1, 1024).astype(np.int64)
    return {
        "weights": checkpoint_weights_hash(result.checkpoint_path),
        "samples": hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest(),
        "weights_probe": _probe_weights(load_checkpoint(result.checkpoint_path)),
        "initial_probe": initial,
        "samples_probe": [float(f"{v:.9g}") for v in flat_samples[positions].tolist()],
    }


def run_all(scratch: Path, names: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Train the pinned runs (all, or `names`) on the CPU with one thread (the thread count can change reduction
    order); return each one's fingerprint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = digits_train_images(scratch)
        return {name: fingerprint(name, images, scratch) for name in (names or tuple(RUNS))}
    finally:
        torch.set_num_threads(threads)


def _relative(a: list[float], b: list[float], scale: float) -> float:
    difference = math.dist(a, b)
    return difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)


def distance(measured: dict[str, Any], pinned: dict[str, Any]) -> float:
    """How far a run is from its pin, as a fraction of how far training moved the pinned run: the distance between
    the probed weights over the distance the pinned weights travelled from their initialisation, or the distance
    between the probed samples over the pinned samples' spread, whichever is larger."""
    pinned_weights, pinned_start = pinned["weights_probe"], pinned["initial_probe"]
    travelled = math.dist(pinned_weights, pinned_start)
    samples = pinned["samples_probe"]
    mean = sum(samples) / len(samples)
    spread = math.dist(samples, [mean] * len(samples))
    return max(
        _relative(measured["weights_probe"], pinned_weights, travelled),
        _relative(measured["samples_probe"], samples, spread),
    )


def nearest_recording(recordings: list[dict[str, Any]], here: dict[str, str]) -> dict[str, Any]:
    """The recording of this environment, or else the closest one: same torch build and architecture first, then the
    nearest vector-instruction level."""

    def rank(capability: str) -> int:
        return CAPABILITY_ORDER.index(capability) if capability in CAPABILITY_ORDER else len(CAPABILITY_ORDER)

    def closeness(recording: dict[str, Any]) -> tuple[bool, bool, bool, int]:
        env = recording["environment"]
        return (
            env == here,
            env["torch"] == here["torch"],
            env["machine"] == here["machine"],
            -abs(rank(env["cpu_capability"]) - rank(here["cpu_capability"])),
        )

    return max(recordings, key=closeness)


@dataclass(frozen=True)
class Verdict:
    """One run against its pin: bit-identical, or within its tolerance of a recording made on other kernels."""

    name: str
    exact: bool
    distance: float
    tolerance: float

    @property
    def holds(self) -> bool:
        return self.exact or self.distance <= self.tolerance


def judge(measured: dict[str, dict[str, Any]], recording: dict[str, Any], here: dict[str, str]) -> list[Verdict]:
    """Compare fingerprints with a recording: bit for bit where it was made in this environment, else within
    `TOLERANCE` (an exact match on another machine counts too)."""
    same_environment = recording["environment"] == here
    verdicts = []
    for name, fingerprint_here in measured.items():
        pinned = recording["runs"][name]
        exact = all(fingerprint_here[key] == pinned[key] for key in ("weights", "samples"))
        tolerance = 0.0 if same_environment else TOLERANCE[name]
        verdicts.append(Verdict(name, exact, distance(fingerprint_here, pinned), tolerance))
    return verdicts


def load_recordings() -> list[dict[str, Any]]:
    return json.loads(GOLDEN.read_text())["recordings"]


def record(runs: dict[str, dict[str, Any]], env: dict[str, str]) -> None:
    """Add this environment's recording to the JSON, replacing an older one of the same environment."""
    recordings = [r for r in load_recordings() if r["environment"] != env] if GOLDEN.exists() else []
    recordings.append({"environment": env, "runs": runs})
    recordings.sort(key=lambda r: (r["environment"]["machine"], r["environment"]["cpu_capability"]))
    GOLDEN.write_text(json.dumps({"recordings": recordings}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = run_all(Path(tmp))
    here = environment()
    if "--record" in sys.argv:
        record(runs, here)
    elif GOLDEN.exists():
        recording = nearest_recording(load_recordings(), here)
        print(f"this machine: {here}; compared with the recording of {recording['environment']}")
        for verdict in judge(runs, recording, here):
            allowed = f"allowed {verdict.tolerance}"
            print(f"{verdict.name:40} exact={verdict.exact} distance={verdict.distance:.3g} ({allowed})")
