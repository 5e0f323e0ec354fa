"""The digits graph (dataset -> training -> samples -> Parzen -> metrics -> report) on a SQLite instance and on a
PostgreSQL instance (a throw-away server on 127.0.0.1, pipelines/local_servers.py), side by side in one run.

    python bench/instance_storage.py --epochs 3 --samples 1000 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def time_graph(home: Path, data: Path, epochs: int, samples: int) -> float:
    import dagster as dg

    from assets.resources import StorageResource
    from pipelines.cli import run_pipeline
    from pipelines.definitions import build_definitions

    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(storage=StorageResource(root_dir=str(data)))
        started = time.perf_counter()
        run_pipeline(
            "digits", "paper_mlp", {"epochs": epochs}, instance=instance, defs=defs, sample_config={"count": samples}
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    from common import write_json

    from pipelines.local_servers import postgres_server

    scratch = Path(tempfile.mkdtemp(prefix="gan-pipeline-instances-"))
    times: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    with postgres_server() as server:
        os.environ["GAN_PIPELINE_POSTGRES_URL"] = server.url
        for repeat in range(args.repeats):
            for kind, template in (("sqlite", "dagster.yaml"), ("postgres", "deploy/dagster.postgres.yaml")):
                home = scratch / f"{kind}{repeat}" / "home"
                home.mkdir(parents=True)
                shutil.copy(REPO_ROOT / template, home / "dagster.yaml")
                if kind == "postgres":  # a fresh database per repeat, like a fresh SQLite home
                    import psycopg2

                    connection = psycopg2.connect(
                        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres"
                    )
                    connection.autocommit = True
                    connection.cursor().execute(f"CREATE DATABASE run{repeat}")
                    os.environ["GAN_PIPELINE_POSTGRES_URL"] = server.url.rsplit("/", 1)[0] + f"/run{repeat}"
                times[kind].append(time_graph(home, scratch / f"{kind}{repeat}" / "data", args.epochs, args.samples))
                print(f"repeat {repeat}: {kind:8} {times[kind][-1]:6.1f} s")
    best = {kind: min(values) for kind, values in times.items()}
    print(
        f"best of {args.repeats}: SQLite {best['sqlite']:.1f} s, PostgreSQL {best['postgres']:.1f} s "
        f"(PostgreSQL / SQLite = {best['postgres'] / best['sqlite']:.2f}x)"
    )
    if args.json:
        write_json(args.json, {"seconds": times, "best": best})


if __name__ == "__main__":
    main()
