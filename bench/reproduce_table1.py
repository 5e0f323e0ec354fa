"""The paper's Table 1 MNIST row with the `paper_reproduction` experiment (experiments.yaml): its three seeds stacked
as one batched model, the validation monitor every few epochs keeping each seed's best checkpoint beside its last,
and both scored under the exact protocol (gan_core.reproduction), outside Dagster so that a long run can be watched,
stopped and resumed on any machine.

    python bench/reproduce_table1.py --mnist-source ../shared/data/mnist --out runs/paper_reproduction \
        [--max-seconds 7200] [--score] [--json bench/results/table1_cpu.json]

Training resumes from the checkpoints in --out; `--max-seconds` stops after the first epoch past that wall time
(checkpointed). `--score` then scores each seed's best and last checkpoints and prints the row beside the paper's
225 +- 2, the monitor's curve (every estimate per seed, with the training seconds to it) and, where a scored
checkpoint reaches 220 or 225, the training seconds (across resumes) to the earliest such checkpoint of each seed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import ensure_mnist, write_json

from assets.configs import GanTrainingConfig
from assets.resources import DECLARED_EXPERIMENTS
from gan_core.checkpoint import load_checkpoint
from gan_core.config import RuntimeOptions
from gan_core.data import load_split
from gan_core.experiments import ExperimentRegistry
from gan_core.layout import checkpoint_file
from gan_core.monitor import MONITOR_KEY
from gan_core.reproduction import best_and_last, protocol_score, reproduction_rows
from gan_core.train import train_seeds

EXPERIMENT = "paper_reproduction"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-source", default="")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="runs/paper_reproduction")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-seconds", type=float, default=0, help="stop (checkpointed) past this wall time")
    parser.add_argument("--epochs", type=int, default=0, help="train to this epoch instead of the experiment's")
    parser.add_argument("--score", action="store_true", help="score best and last checkpoints under the protocol")
    parser.add_argument("--no-train", action="store_true", help="only score the checkpoints there (with --score)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    h5 = ensure_mnist(args.mnist_source, Path(args.data_dir))
    train, valid, test = (load_split(h5, split) for split in ("train", "valid", "test"))
    with tempfile.TemporaryDirectory() as nowhere:
        experiment = ExperimentRegistry(Path(nowhere) / "none.json", DECLARED_EXPERIMENTS).get(EXPERIMENT)
    settings = GanTrainingConfig().for_experiment(experiment)
    configs = settings.train_configs("mnist", experiment)
    dirs = [Path(args.out) / f"seed{config.seed}" for config in configs]
    started = time.time()
    options = RuntimeOptions(
        device=args.device,
        progress=False,
        stack_seeds=settings.stack_seeds,
        checkpoint_every=settings.checkpoint_every,
        stop_after_time=started + args.max_seconds if args.max_seconds > 0 else None,
        stop_after_epoch=args.epochs or None,
    )
    log = lambda m: print(m, flush=True)  # noqa: E731
    outcomes = [] if args.no_train else train_seeds(configs, train, dirs, options, log, monitor_images=valid)
    for config, outcome in zip(configs, outcomes, strict=False):  # none with --no-train
        if isinstance(outcome, Exception):  # a diverged seed: its last good checkpoint is kept and scored
            print(f"seed {config.seed}: {outcome}")
        else:
            print(f"seed {config.seed}: {outcome.epochs} epochs, {outcome.wall_seconds:.0f} s on {outcome.device}")
    if not args.score:
        return

    scores, curves = [], {}
    for config, run_dir in zip(configs, dirs, strict=True):
        history = load_checkpoint(checkpoint_file(run_dir))["history"]
        curves[config.seed] = [[row["epoch"], row["elapsed"], row[MONITOR_KEY]] for row in _elapsed(history)]
        for kind, path in best_and_last(run_dir).items():
            score = protocol_score(path, valid, test, device=args.device)
            scores.append({"dataset": "mnist", "model": EXPERIMENT, "seed": config.seed, "checkpoint": kind, **score})
            monitor = "not monitored" if score["monitor_ll"] is None else f"monitor {score['monitor_ll']:.1f}"
            print(
                f"seed {config.seed} {kind}: epoch {score['epoch']}, {score['mean_log_likelihood']:.1f} +- "
                f"{score['standard_error']:.1f} nats (sigma {score['sigma']:.3f}, {monitor})",
                flush=True,
            )
    rows = reproduction_rows(scores)
    print("paper (Table 1): 225.0 +- 2.0")
    for row in rows:
        print(
            f"this project, {row['checkpoint']} checkpoint: {row['mean']:.1f} +- {row['error']:.1f} over "
            f"{row['seeds']} seeds, {row['epochs']:.0f} epochs (mean), {row['wall_seconds']:.0f} s training"
        )
    reached = {}
    for target in (220.0, 225.0):
        for seed in sorted({s["seed"] for s in scores}):
            hits = [s for s in scores if s["seed"] == seed and s["mean_log_likelihood"] >= target]
            if hits:
                first = min(hits, key=lambda s: s["wall_seconds"])
                reached[f"{target:.0f}|seed{seed}"] = first["wall_seconds"]
                print(
                    f"seed {seed}: {target:.0f} nats reached by epoch {first['epoch']}, {first['wall_seconds']:.0f} s"
                )
    if not reached:
        print("no scored checkpoint reached 220 nats")
    if args.json:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        write_json(
            args.json,
            {"device": device, "rows": rows, "scores": scores, "monitor_curves": curves, "seconds_to": reached},
        )
        print(json.dumps(rows, indent=1))


def _elapsed(history: list[dict]) -> list[dict]:
    """The monitored epochs of `history` with the training seconds up to their end."""
    total, monitored = 0.0, []
    for row in history:
        total += row["seconds"]
        if MONITOR_KEY in row:
            monitored.append({**row, "elapsed": round(total, 1)})
    return monitored


if __name__ == "__main__":
    main()
