"""A real sweep on digits against the same points run one by one, side by side in one run, then the sweep relaunched.

    .venv/bin/python bench/experiment_sweep.py --epochs 30 --out bench/results/experiment_sweep_digits.json

Both set-ups get their own instance and data directory and train the same experiments (the same names, settings and
seeds, so the same weights). `sweep` is `gan-pipeline sweep`: the points that share the training loop's shape train as
one loop in the first point's step. `one by one` declares the same points (`sweep --no-launch`) and runs each with
`gan-pipeline run --experiment P` and `batch_seeds: false`, every seed in its own loop. Then the sweep is launched
again: nothing may train. Printed: wall times, the gan_model steps' seconds, the sweep's experiments table; the
sweep's plot is copied beside `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "gan-pipeline")


def run(env: dict[str, str], *args: str) -> tuple[float, str]:
    """`gan-pipeline ARGS` (its wall seconds, its output); a failure stops the bench with the output's end."""
    started = time.perf_counter()
    done = subprocess.run([CLI, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return time.perf_counter() - started, done.stdout


def step_seconds(home: Path, step: str = "gan_model") -> tuple[float, int]:
    """The summed duration of `step` over every run of the instance at `home`, and how many runs had it."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        stats = [
            s for run in instance.get_runs() for s in instance.get_run_step_stats(run.run_id) if s.step_key == step
        ]
        return sum(s.end_time - s.start_time for s in stats if s.end_time), len(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="lrm")
    parser.add_argument(
        "--grid", action="append", default=None, help="default: learning_rate=0.05,0.1,0.2 and momentum_end=0.6,0.7"
    )
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    grid = args.grid or ["learning_rate=0.05,0.1,0.2", "momentum_end=0.6,0.7"]
    sweep = ["sweep", args.name, "--dataset", "digits", "--model", "paper_mlp", "--seeds", *args.seeds]
    sweep += ["--epochs", str(args.epochs), "--samples", str(args.samples)]
    for text in grid:
        sweep += ["--grid", text]
    figures: dict = {"epochs": args.epochs, "seeds": len(args.seeds), "grid": grid, "samples": args.samples}
    with tempfile.TemporaryDirectory(prefix="experiment-sweep-") as scratch:
        envs = {}
        for setup in ("sweep", "one_by_one"):
            root = Path(scratch) / setup
            envs[setup] = {
                **os.environ,
                "DAGSTER_HOME": str(root / "home"),
                "GAN_PIPELINE_DATA_DIR": str(root / "data"),
            }

        figures["sweep_s"], output = run(envs["sweep"], *sweep)
        print(output[-2500:], flush=True)
        figures["sweep_gan_model_s"], _ = step_seconds(Path(envs["sweep"]["DAGSTER_HOME"]))

        run(envs["one_by_one"], *sweep, "--no-launch")
        names = [line.split(":")[0] for line in run(envs["one_by_one"], "experiment", "list")[1].splitlines()]
        points = [name for name in names if name.startswith(f"{args.name}-")]
        started = time.perf_counter()
        for point in points:
            run(
                envs["one_by_one"],
                "run",
                "--dataset",
                "digits",
                "--experiment",
                point,
                "--samples",
                str(args.samples),
                "--train-config",
                json.dumps({"batch_seeds": False}),
            )
        figures["one_by_one_s"] = time.perf_counter() - started
        figures["one_by_one_gan_model_s"], _ = step_seconds(Path(envs["one_by_one"]["DAGSTER_HOME"]))

        figures["relaunch_s"], output = run(envs["sweep"], *sweep)
        figures["relaunch_new_experiments"] = "(0 new experiments)" in output
        data = Path(envs["sweep"]["GAN_PIPELINE_DATA_DIR"])
        same = {}
        for point in points:  # the same weights either way (CPU: in turn is bit-identical to alone)
            hashes = []
            for setup in ("sweep", "one_by_one"):
                index = Path(envs[setup]["GAN_PIPELINE_DATA_DIR"]) / "models" / "digits" / point / "latest.json"
                hashes.append(sorted(run_["weights_hash"] for run_ in json.loads(index.read_text())["runs"]))
            same[point] = hashes[0] == hashes[1]
        figures["same_weights_both_ways"] = same
        import pandas as pd

        table = pd.read_csv(data / "reports" / "experiments.csv")
        rows = table[(table["sweep"] == args.name) | table["seeds"].isna()]
        columns = [
            "best",
            "experiment",
            "settings",
            "seeds",
            "log_likelihood",
            "frechet_distance",
            "frechet_distance_std",
            "precision",
            "recall",
            "class_coverage",
        ]
        print(rows[columns].to_string(index=False))
        figures["table"] = json.loads(rows[columns].to_json(orient="records"))
        if args.out:
            shutil.copy(data / "reports" / f"sweep_digits_{args.name}.png", Path(args.out).with_suffix(".png"))
    for key in ("sweep_s", "one_by_one_s", "sweep_gan_model_s", "one_by_one_gan_model_s", "relaunch_s"):
        figures[key] = round(figures[key], 1)
    figures["one_by_one_over_sweep"] = round(figures["one_by_one_s"] / figures["sweep_s"], 2)
    figures["gan_model_one_by_one_over_sweep"] = round(
        figures["one_by_one_gan_model_s"] / figures["sweep_gan_model_s"], 2
    )
    print(json.dumps({k: v for k, v in figures.items() if k != "table"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
