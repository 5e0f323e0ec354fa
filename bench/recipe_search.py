"""Search for a modern MNIST recipe (issue 16, item 4): candidate set-ups trained side by side, each scored every few
epochs the way the pipeline scores samples (gan_core.metrics: 5,000 samples against 10,000 training images in the
feature classifier's space, memorisation against held-out images).

    python bench/recipe_search.py --data-dir data --epochs 20 --eval-every 2 --parallel 12 --max-seconds 360 \
        --jsonl out/recipes.jsonl                    # all candidates at once (meant for a GPU machine)
    python bench/recipe_search.py --data-dir data --time-steps 60 --jsonl out/cpu_cost.jsonl   # CPU s per epoch

Needs `datasets/mnist.h5` and `models/mnist/feature_classifier.pt` in the data directory (the pipeline's layout;
materialise `preprocessed_dataset` and `feature_classifier` for mnist first). A candidate is a registered model and
TrainConfig settings, optionally with an architecture change this script makes to `dcgan`'s pair (batch norm in D,
DCGAN's N(0, 0.02) initialisation, spectral norm after that initialisation, another width): a change that wins
becomes a `gan_core.models.MODELS` entry, and only that entry's run through the pipeline is the result.

`--time-steps N` instead times N training steps of each candidate on this machine and prints the seconds an MNIST epoch
(50,000 images) would take, to tell which candidates fit the issue's 30 CPU minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gan_core.updates as updates
from gan_core.classifier import load_classifier
from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.data import load_split, load_split_arrays
from gan_core.layout import ArtifactLayout
from gan_core.losses import ADAM_ALTERNATING
from gan_core.metrics import build_reference_set, score_against
from gan_core.models import ConvDiscriminator, ConvGenerator, ModelPair, get_model_spec
from gan_core.sample import LoadedGenerator, asked_labels, generate
from gan_core.train import train_gan


@dataclass(frozen=True)
class Candidate:
    model: str
    settings: dict[str, Any]
    arch: dict[str, Any] = field(default_factory=dict)  # width, d_batchnorm, dcgan_init, spectral_norm


ADAM64 = {**ADAM_ALTERNATING, "batch_size": 64}
SN_INIT = {"dcgan_init": True, "spectral_norm": True}
CANDIDATES: dict[str, Candidate] = {
    "dcgan": Candidate("dcgan", ADAM64),  # today's entry: the baseline
    "dcgan_init": Candidate("dcgan", ADAM64, {"dcgan_init": True}),
    "dcgan_bn": Candidate("dcgan", ADAM64, {"dcgan_init": True, "d_batchnorm": True}),  # Radford et al.'s pair
    "dcgan_bn_ema": Candidate("dcgan", {**ADAM64, "ema_decay": 0.999}, {"dcgan_init": True, "d_batchnorm": True}),
    "dcgan_bn_b128": Candidate(
        "dcgan", {**ADAM_ALTERNATING, "batch_size": 128}, {"dcgan_init": True, "d_batchnorm": True}
    ),
    "dcgan_bn_gauss": Candidate("dcgan", {**ADAM64, "noise": "gaussian"}, {"dcgan_init": True, "d_batchnorm": True}),
    "dcgan32_bn": Candidate("dcgan", ADAM64, {"width": 32, "dcgan_init": True, "d_batchnorm": True}),
    "dcgan_bn_hinge": Candidate("dcgan", {**ADAM64, "loss": "hinge"}, {"dcgan_init": True, "d_batchnorm": True}),
    "sn_hinge": Candidate("dcgan_sn", {**ADAM64, "loss": "hinge"}),
    "sn_hinge_init": Candidate("dcgan", {**ADAM64, "loss": "hinge"}, SN_INIT),
    "sn_hinge_b0": Candidate("dcgan", {**ADAM64, "loss": "hinge", "adam_beta1": 0.0, "adam_beta2": 0.9}, SN_INIT),
    "paper_mlp_adam": Candidate("paper_mlp", {**ADAM64, "ema_decay": 0.999}),
    # second round (the first: every DCGAN variant far from the target at the epochs 30 CPU minutes allow)
    "mlp_adam_noema": Candidate("paper_mlp", ADAM64),
    "mlp_adam_hinge": Candidate("paper_mlp", {**ADAM64, "ema_decay": 0.999, "loss": "hinge"}),
    "mlp_adam_b32": Candidate("paper_mlp", {**ADAM64, "batch_size": 32, "ema_decay": 0.999}),
    "mlp_adam_lr1e4": Candidate("paper_mlp", {**ADAM64, "learning_rate": 1e-4, "ema_decay": 0.999}),
    "mlp_adam_ema9999": Candidate("paper_mlp", {**ADAM64, "ema_decay": 0.9999}),
    "mlp_cond_adam": Candidate("paper_mlp_cond", {**ADAM64, "ema_decay": 0.999}),
    "dcgan_cond": Candidate("dcgan_cond", ADAM64),
}


def build_variant(image_shape: tuple[int, int, int], arch: dict[str, Any]) -> ModelPair:
    """dcgan's pair with this candidate's changes (see the module's docstring)."""
    width = arch.get("width", 64)
    generator = ConvGenerator(image_shape, 100, width)
    discriminator = ConvDiscriminator(image_shape, width)
    if arch.get("d_batchnorm"):  # after every convolution but the first, before its leaky ReLU (Radford et al.)
        layers: list[nn.Module] = []
        for index, layer in enumerate(discriminator.features):
            layers.append(layer)
            if isinstance(layer, nn.Conv2d) and index > 0:
                layers.append(nn.BatchNorm2d(layer.out_channels))
        discriminator.features = nn.Sequential(*layers)
    if arch.get("dcgan_init"):
        for module in [*generator.modules(), *discriminator.modules()]:
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
    if arch.get("spectral_norm"):
        for module in [*discriminator.features, discriminator.head]:
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.utils.parametrizations.spectral_norm(module)
    return ModelPair(generator, discriminator, noise_dim=100)


REGISTERED_BUILDER = updates.build_model_pair


def use_candidate(candidate: Candidate) -> None:
    """Make the trainer build this candidate's pair (this process only): its variant, or the registered model."""
    updates.build_model_pair = (
        (lambda name, shape, classes=0, n_g=1, n_d=1: build_variant(shape, candidate.arch))
        if candidate.arch
        else REGISTERED_BUILDER
    )


def training_split(h5: Path, model: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """MNIST's training images, and for a conditional model the train_gan arguments that carry their labels."""
    images = load_split(h5, "train")
    if not get_model_spec(model).conditional:
        return images, {}
    return images, {"train_labels": torch.from_numpy(load_split_arrays(h5, "train").labels), "num_classes": 10}


def run_one(name: str, args: argparse.Namespace) -> None:
    """Train one candidate, appending a JSON line per evaluation to args.jsonl."""
    torch.set_num_threads(1 if args.parallel > 1 else torch.get_num_threads())
    candidate = CANDIDATES[name]
    use_candidate(candidate)
    h5 = ArtifactLayout(args.data_dir).dataset_file("mnist")
    images, labelled = training_split(h5, candidate.model)
    conditional = bool(labelled)
    classifier = load_classifier(Path(args.data_dir) / "models" / "mnist" / "feature_classifier.pt")
    reference = build_reference_set(h5, classifier, 10, 10_000)
    config = TrainConfig(
        model=candidate.model,
        epochs=args.epochs,
        seed=args.seed,
        max_train_images=args.max_images,
        **candidate.settings,
    )
    image_shape = tuple(images.shape[1:])
    started, evaluating = time.perf_counter(), [0.0]

    deadline = args.deadline or (time.time() + args.max_seconds if args.max_seconds > 0 else None)

    def evaluate(epoch: int, sampler: nn.Module) -> None:
        stopping = deadline is not None and time.time() >= deadline  # the last epoch this run trains
        if epoch % args.eval_every and epoch != args.epochs and not stopping:
            return
        begun = time.perf_counter()
        loaded = LoadedGenerator(sampler, 100, config.noise, image_shape, config.to_dict(), 10 if conditional else 0)
        samples = generate(loaded, args.samples, seed=1234)  # drawn as the pipeline draws them
        asked = asked_labels(args.samples, 10) if conditional else None
        metrics = score_against(samples, reference, asked=asked).to_dict()
        evaluating[0] += time.perf_counter() - begun
        line = {
            "candidate": name,
            "epoch": epoch,
            "train_seconds": round(time.perf_counter() - started - evaluating[0], 1),
            "device": str(next(sampler.parameters()).device),
            **{k: round(metrics[k], 4) for k in ("frechet_distance", "precision", "recall", "class_coverage")},
            "memorisation_ratio": round(metrics["memorisation_ratio"], 4),
            **({"conditional_accuracy": round(metrics["conditional_accuracy"], 4)} if conditional else {}),
        }
        with open(args.jsonl, "a") as out:
            out.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)

    options = RuntimeOptions(progress=False, on_epoch_end=evaluate, stop_after_time=deadline, checkpoint_every=1000)
    with tempfile.TemporaryDirectory() as run_dir:
        train_gan(config, images, run_dir, options, **labelled)


def time_steps(name: str, steps: int, data_dir: str) -> dict[str, Any]:
    """Seconds per MNIST epoch (its 50,000 training images) of one candidate here, from `steps` steps after warm-up."""
    candidate = CANDIDATES[name]
    use_candidate(candidate)
    config = TrainConfig(model=candidate.model, epochs=1, **candidate.settings)
    images, extra = training_split(ArtifactLayout(data_dir).dataset_file("mnist"), candidate.model)
    quiet = RuntimeOptions(progress=False)
    per_step = config.batch_size * config.d_steps
    with tempfile.TemporaryDirectory() as run_dir:
        warm = TrainConfig(**{**config.to_dict(), "max_train_images": 5 * per_step})
        train_gan(warm, images, Path(run_dir) / "warm", quiet, **extra)
        begun = time.perf_counter()
        timed = TrainConfig(**{**config.to_dict(), "max_train_images": steps * per_step})
        train_gan(timed, images, Path(run_dir) / "timed", quiet, **extra)
        seconds = time.perf_counter() - begun
    return {"candidate": name, "seconds_per_epoch": round(seconds / (steps * per_step) * len(images), 1)}


def summarise(jsonl: str) -> None:
    """The best evaluation of each candidate, and its whole Fréchet-distance curve."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in Path(jsonl).read_text().splitlines():
        entry = json.loads(line)
        rows.setdefault(entry["candidate"], []).append(entry)
    header = ("candidate", "best FD", "epoch", "prec", "recall", "classes", "memo")
    print("{:16s} {:>8s} {:>5s} {:>6s} {:>6s} {:>7s} {:>6s}  FD by epoch".format(*header))
    for name, entries in sorted(rows.items(), key=lambda item: min(e["frechet_distance"] for e in item[1])):
        best = min(entries, key=lambda e: e["frechet_distance"])
        curve = " ".join(f"{e['epoch']}:{e['frechet_distance']:.1f}" for e in entries)
        print(
            f"{name:16s} {best['frechet_distance']:8.2f} {best['epoch']:5d} {best['precision']:6.3f} "
            f"{best['recall']:6.3f} {best['class_coverage']:7.2f} {best['memorisation_ratio']:6.3f}  {curve}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-images", type=int, default=0, help="train on the first N images (0: all 50,000)")
    parser.add_argument("--parallel", type=int, default=1, help="candidates trained at once, each in its own process")
    parser.add_argument("--max-seconds", type=float, default=0, help="all candidates stop after this (0: no limit)")
    parser.add_argument("--time-steps", type=int, default=0, help="only time this many steps of each candidate")
    parser.add_argument("--jsonl", default="recipes.jsonl")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # a child process: train this candidate
    parser.add_argument("--deadline", type=float, default=0, help=argparse.SUPPRESS)  # the children's shared end
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args)
        return
    if args.time_steps:
        for name in args.candidates:
            line = time_steps(name, args.time_steps, args.data_dir)
            print(json.dumps(line), flush=True)
            with open(args.jsonl, "a") as out:
                out.write(json.dumps(line) + "\n")
        return
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if args.parallel > 1 else {})}
    # one deadline for all: a candidate that waits for a free slot gets what is left, not a budget of its own
    deadline = ["--deadline", str(time.time() + args.max_seconds)] if args.max_seconds > 0 else []
    waiting, running = list(args.candidates), []
    while waiting or running:
        while waiting and len(running) < args.parallel:
            name = waiting.pop(0)
            running.append(
                subprocess.Popen([sys.executable, __file__, "--one", name, *sys.argv[1:], *deadline], env=env)
            )
        running = [process for process in running if process.poll() is None]
        time.sleep(1)
    summarise(args.jsonl)


if __name__ == "__main__":
    main()
