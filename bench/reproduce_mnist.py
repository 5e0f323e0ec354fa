"""Long run of the paper's MNIST configuration with periodic Parzen evaluation (the paper's protocol).

    python bench/reproduce_mnist.py --mnist-source ../shared/data/mnist --out runs/mnist_paper --epochs 400

Checkpoints every epoch (killed runs resume where they stopped) and appends one JSON line per evaluation to
<out>/parzen.jsonl: epoch, wall time, sigma, mean test log-likelihood +- standard error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import ensure_mnist

from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.data import load_split
from gan_core.parzen import evaluate_parzen
from gan_core.sample import LoadedGenerator, generate
from gan_core.train import train_gan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-source", default="", help="local directory or mirror URL of the MNIST .gz files")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="runs/mnist_paper")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--noise", default="uniform", choices=["uniform", "gaussian"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--max-seconds", type=float, default=0, help="stop (checkpointed) after the first epoch past this wall time"
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="replay each training step as a CUDA graph (GPU only)"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    h5_path = ensure_mnist(args.mnist_source, Path(args.data_dir))
    train = load_split(h5_path, "train")
    valid = load_split(h5_path, "valid").flatten(1)
    test = load_split(h5_path, "test").flatten(1)
    config = TrainConfig(epochs=args.epochs, noise=args.noise, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "parzen.jsonl"
    started = time.time()

    def evaluate(epoch: int, generator: torch.nn.Module) -> None:
        if epoch % args.eval_every:
            return
        loaded = LoadedGenerator(generator, 100, config.noise, (1, 28, 28), config.to_dict())
        samples = generate(loaded, 10_000, seed=1234)
        t0 = time.time()
        result = evaluate_parzen(samples.reshape(len(samples), -1), valid, test)
        line = {
            "epoch": epoch,
            "wall_seconds_since_start": round(time.time() - started, 1),
            "eval_seconds": round(time.time() - t0, 1),
            **result.to_dict(),
        }
        with log_path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        print(
            f"[parzen] epoch {epoch}: {result.mean_log_likelihood:.1f} +- {result.standard_error:.1f} "
            f"(sigma {result.sigma:.3f})",
            flush=True,
        )

    result = train_gan(
        config,
        train,
        out,
        RuntimeOptions(
            device=args.device,
            cuda_graph=args.cuda_graph,
            progress=False,
            on_epoch_end=evaluate,
            stop_after_time=started + args.max_seconds if args.max_seconds > 0 else None,
        ),
        log=lambda m: print(m, flush=True),
    )
    state = "done" if result.finished else "stopped at the time limit"
    print(f"{state}: {result.epochs} epochs, {result.wall_seconds:.0f} s training on {result.device}")


if __name__ == "__main__":
    main()
