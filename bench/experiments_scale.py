"""What 10, 100 and 1,000 experiments cost: the code location's load, `dg check defs`, the report asset and a GraphQL
query of the partitions, measured side by side in one run.

Each size gets its own data directory and instance. The experiments are sweeps of 10 points (5 learning rates x 2
momenta, one seed); their stored results are written directly, not trained: every experiment's indexes point at one
real trained digits run (2 epochs, 500 samples), with its Parzen and metric numbers shifted per experiment so the
table has an order. The report then reads, checks and tabulates every one of them as it would trained ones.

    .venv/bin/python bench/experiments_scale.py --sizes 10 100 1000 --out bench/results/experiments_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from assets.evaluation_assets import reference_result  # noqa: E402
from assets.metrics_assets import reference_metrics  # noqa: E402
from assets.partitions import dataset_experiment_key, register_experiments  # noqa: E402
from assets.resources import StorageResource  # noqa: E402
from gan_core.experiments import sweep_experiments  # noqa: E402
from gan_core.records import read_record, write_record  # noqa: E402
from pipelines.definitions import build_definitions  # noqa: E402

TEMPLATE = "paper_mlp"
KINDS = ("models", "samples", "bandwidth", "parzen", "metrics")


def build_template(root: Path) -> None:
    """A data directory with digits, its classifier, the reference rows and one short trained partition."""
    storage = StorageResource(root_dir=str(root))
    defs = build_definitions(storage=storage)
    with dg.instance_for_test() as instance:
        register_experiments(instance, storage.experiments.names())
        assert defs.resolve_job_def("dataset_job").execute_in_process(partition_key="digits", instance=instance).success
        run_config = {
            "ops": {
                "gan_model": {"config": {"epochs": 2}},
                "generated_samples": {"config": {"count": 500}},
                "parzen_bandwidth": {"config": {"n_valid": 100}},
            }
        }
        result = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("digits", TEMPLATE), instance=instance, run_config=run_config
        )
        assert result.success
    reference_result(storage.layout, "digits")
    reference_metrics(storage.layout, "digits")


def write_experiments(root: Path, count: int) -> list[str]:
    """`count` experiments (sweeps of 10 points) with stored results copied from the template partition."""
    storage = StorageResource(root_dir=str(root))
    layout, registry = storage.layout, storage.experiments
    points = []
    for sweep in range(max(1, count // 10)):
        grid = {"learning_rate": [0.02, 0.05, 0.1, 0.2, 0.4], "momentum_end": [0.6, 0.7]}
        points += sweep_experiments(f"s{sweep:03d}", TEMPLATE, grid, [0])
    points = points[:count]
    registry.add(points)
    template = {kind: read_record(layout.partition_index(kind, "digits", TEMPLATE), kind) for kind in KINDS}
    for number, point in enumerate(points):
        shift = (number * 7919 % 1000) / 1000  # a spread of results, in no particular order
        for kind in KINDS:
            record = json.loads(json.dumps(template[kind]))
            for run in record["runs"]:
                if "model" in run:
                    run["model"] = point.name
                if kind == "parzen":
                    run["mean_log_likelihood"] += shift
                if kind == "metrics":
                    run["frechet_distance"] += shift
            write_record(layout.partition_index(kind, "digits", point.name), record)
    return [point.name for point in points]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(url: str, text: str) -> dict:
    body = json.dumps({"query": text}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


PARTITIONS_QUERY = (
    '{ assetNodeOrError(assetKey: {path: ["gan_model"]}) { ... on AssetNode { '
    "partitionKeysByDimension { name partitionKeys } } } }"
)


def time_graphql(env: dict[str, str], log: Path) -> tuple[float, int]:
    """Seconds of one GraphQL query of gan_model's partitions (the best of 3) against a webserver of this instance,
    and how many experiment keys it returned."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while True:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                try:
                    node = graphql(url, PARTITIONS_QUERY)["assetNodeOrError"]
                    if node and "partitionKeysByDimension" in node:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
                    pass
                time.sleep(1)
            timings, keys = [], 0
            for _ in range(3):
                started = time.perf_counter()
                dims = graphql(url, PARTITIONS_QUERY)["assetNodeOrError"]["partitionKeysByDimension"]
                timings.append(time.perf_counter() - started)
                keys = len(next(d["partitionKeys"] for d in dims if d["name"] == "experiment"))
            return min(timings), keys
        finally:
            server.terminate()
            server.wait(timeout=60)


def measure(root: Path, template: Path, count: int) -> dict:
    data, home = root / "data", root / "home"
    shutil.copytree(template, data)
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    names = write_experiments(data, count)
    env = {**os.environ, "DAGSTER_HOME": str(home), "GAN_PIPELINE_DATA_DIR": str(data)}
    storage = StorageResource(root_dir=str(data))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register_experiments(instance, storage.experiments.names())

    load = (
        "import time; started = time.perf_counter(); from pipelines.definitions import defs; "
        "d = defs(); d.resolve_all_job_defs(); d.resolve_all_asset_specs(); print(time.perf_counter() - started)"
    )
    loaded = subprocess.run([sys.executable, "-c", load], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    started = time.perf_counter()
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"], cwd=REPO_ROOT, env=env, capture_output=True
    )
    check_seconds = time.perf_counter() - started
    assert checked.returncode == 0, checked.stderr[-3000:]

    defs = build_definitions(storage=storage)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = time.perf_counter()
        report = defs.resolve_job_def("report_job").execute_in_process(instance=instance)
        report_seconds = time.perf_counter() - started
        assert report.success
    page = storage.layout.report_file("report.html")
    graphql_seconds, keys = time_graphql(env, root / "webserver.log")
    return {
        "experiments": count,
        "experiment_partitions": keys,
        "code_location_load_s": round(float(loaded.stdout.strip().splitlines()[-1]), 2),
        "dg_check_defs_s": round(check_seconds, 2),
        "report_asset_s": round(report_seconds, 2),
        "graphql_partitions_s": round(graphql_seconds, 3),
        "report_html_kib": round(page.stat().st_size / 1024),
        "report_tables_rows": sum(1 for _ in open(storage.layout.report_file("experiments.csv"))) - 1,
        "names_written": len(names),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="experiments-scale-") as scratch:
        template = Path(scratch) / "template"
        build_template(template)
        rows = []
        for count in args.sizes:
            rows.append(measure(Path(scratch) / str(count), template, count))
            print(json.dumps(rows[-1]), flush=True)
    columns = ["experiments", "code_location_load_s", "dg_check_defs_s", "report_asset_s", "graphql_partitions_s"]
    columns += ["report_html_kib"]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    base = rows[0]
    for row in rows[1:]:
        ratios = {c: round(row[c] / base[c], 2) for c in columns[1:] if base[c]}
        print(f"{row['experiments']} vs {base['experiments']} experiments: {ratios}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
