"""A sweep of dataset x model partitions (x seeds), in-process against 2 Celery workers, side by side in one run.

    python bench/sweep.py --models paper_mlp dcgan paper_mlp_large --seeds 0 1 --epochs 5

Each set-up gets its own instance and data directory; both train the same partitions with the same settings. The
Celery set-up starts a Redis server and two worker processes on 127.0.0.1 (pipelines/local_servers.py) and launches
every partition's run at once; the in-process set-up runs them one after the other. Then the sweep is launched again
in the Celery set-up: nothing may be recomputed (every step reports `cached`). On 2 cores expect about 1x: the point is
that it is correct, and that a re-launched sweep recomputes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cli(env: dict[str, str], model: str, args: argparse.Namespace, executor: str) -> subprocess.Popen:
    train = json.dumps({"epochs": args.epochs, "seeds": args.seeds})
    command = [sys.executable, "-m", "pipelines.cli", "run", "--dataset", args.dataset, "--model", model]
    command += ["--samples", str(args.samples), "--train-config", train, "--executor", executor]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        output = process.communicate()[0]
        if process.returncode != 0:
            raise SystemExit(f"a sweep run failed:\n{output[-4000:]}")


def cached_steps(home: Path, partitions: int) -> tuple[int, int]:
    """(materialisations that reported cached, all of them) among the latest one per partition of each asset."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        cached = total = 0
        for name in ("gan_model", "generated_samples", "parzen_bandwidth", "parzen_log_likelihood"):
            for record in instance.fetch_materializations(dg.AssetKey(name), limit=partitions).records:
                total += 1
                cached += bool(record.asset_materialization.metadata["cached"].value)
        return cached, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--models", nargs="+", default=["paper_mlp", "dcgan", "paper_mlp_large"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    from common import write_json

    from pipelines.local_servers import redis_server

    scratch = Path(tempfile.mkdtemp(prefix="gan-pipeline-sweep-"))
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print(f"sweep: {args.dataset} x {args.models} x seeds {args.seeds}, {args.epochs} epochs, in {scratch}")

    env = {**base, "DAGSTER_HOME": str(scratch / "home_in_process"), "GAN_PIPELINE_DATA_DIR": str(scratch / "data1")}
    started = time.perf_counter()
    for model in args.models:
        finish([cli(env, model, args, "in_process")])
    in_process = time.perf_counter() - started
    print(f"in-process, one run after another: {in_process:8.1f} s")

    with redis_server() as redis:
        env = {
            **base,
            "DAGSTER_HOME": str(scratch / "home_celery"),
            "GAN_PIPELINE_DATA_DIR": str(scratch / "data2"),
            "GAN_PIPELINE_CELERY_BROKER": redis.url(0),
            "GAN_PIPELINE_CELERY_BACKEND": redis.url(1),
        }
        worker_command = [sys.executable, "-m", "celery", "-A", "pipelines.celery_workers", "worker", "-Q", "dagster"]
        workers = [
            subprocess.Popen(
                [*worker_command, "--concurrency", "1", "-n", f"sweep{i}@%h", "-l", "WARNING"],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        try:
            started = time.perf_counter()
            finish([cli(env, model, args, "celery") for model in args.models])
            celery = time.perf_counter() - started
            started = time.perf_counter()
            finish([cli(env, model, args, "celery") for model in args.models])
            again = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
    cached, total = cached_steps(scratch / "home_celery", len(args.models))
    print(f"2 Celery workers, runs at once:  {celery:8.1f} s  (in-process / Celery = {in_process / celery:.2f}x)")
    print(f"same sweep launched again:       {again:8.1f} s  ({cached} of {total} materialisations cached)")
    if args.json:
        write_json(args.json, {"in_process_s": in_process, "celery_s": celery, "again_s": again, "cached": cached})


if __name__ == "__main__":
    main()
