"""Experiments and sweeps: the registry, the refusals, the partitions, the report's comparison, a sweep's one loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.partitions import dataset_experiment_key, dataset_experiment_partitions, register_experiments
from gan_core.experiments import (
    Experiment,
    ExperimentError,
    ExperimentRegistry,
    builtin_experiment,
    parse_grid,
    sweep_experiments,
)
from gan_core.models import MODELS
from tests.helpers import REPO_ROOT, digits_graph

CLI = str(Path(sys.executable).parent / "gan-pipeline")
FAST = {"generated_samples": {"config": {"count": 500}}, "parzen_bandwidth": {"config": {"n_valid": 100}}}


def cli(home: Path, data: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`gan-pipeline ARGS` as its own process, with its own instance and data directory."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "GAN_PIPELINE_DATA_DIR": str(data)}
    return subprocess.run([CLI, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_registry_holds_built_ins_the_declared_file_and_added_ones(tmp_path) -> None:
    declared = tmp_path / "experiments.yaml"
    declared.write_text("slow_lr:\n  model: paper_mlp\n  settings: {learning_rate: 0.01}\n  seeds: [0, 1]\n")
    registry = ExperimentRegistry(tmp_path / "data" / "experiments.json", declared)
    assert registry.get("paper_mlp") == builtin_experiment("paper_mlp")  # every model entry, as it always was
    assert set(MODELS) <= set(registry.names())
    assert registry.get("slow_lr").settings == {"learning_rate": 0.01} and registry.get("slow_lr").seeds == (0, 1)

    added = Experiment("lr05", "dcgan", {"learning_rate": 0.05}, (0, 1, 2))
    assert registry.add([added]) == [added]
    assert registry.add([added]) == []  # the same definition again: kept as it is
    reread = ExperimentRegistry(tmp_path / "data" / "experiments.json", declared)  # a new process reads the file
    assert reread.get("lr05") == added
    with pytest.raises(ExperimentError, match="exists with another definition"):
        reread.add([Experiment("lr05", "dcgan", {"learning_rate": 0.1})])
    with pytest.raises(ExperimentError, match="declared twice"):
        declared.write_text("lr05:\n  model: paper_mlp\n")
        reread.all()


def test_a_sweep_is_one_experiment_per_grid_point() -> None:
    grid = dict([parse_grid("learning_rate=0.05,0.1"), parse_grid("momentum=0.5,0.7")])
    points = sweep_experiments("lrm", "paper_mlp", grid, [0, 1], {"epochs": 3})
    assert [p.name for p in points] == [
        "lrm-learning_rate0.05-momentum0.5",
        "lrm-learning_rate0.05-momentum0.7",
        "lrm-learning_rate0.1-momentum0.5",
        "lrm-learning_rate0.1-momentum0.7",
    ]
    assert points[1].settings == {"epochs": 3, "learning_rate": 0.05, "momentum": 0.7}
    assert all(p.sweep == "lrm" and p.swept == ("learning_rate", "momentum") and p.seeds == (0, 1) for p in points)


BAD_EXPERIMENT_CASES = {
    "name": (["experiment", "add", "bad name", "--model", "paper_mlp"], ["experiment name", "'bad name'", "letters"]),
    "model": (["experiment", "add", "x", "--model", "nosuch"], ["model: unknown model 'nosuch'", "paper_mlp"]),
    "setting": (
        ["experiment", "add", "x", "--model", "paper_mlp", "--set", "learnin_rate=0.1"],
        ["unknown setting 'learnin_rate'", "did you mean 'learning_rate'"],
    ),
    "bounds": (
        ["experiment", "add", "x", "--model", "paper_mlp", "--set", "learning_rate=-1"],
        ["learning_rate", "> 0 and finite", "got -1"],
    ),
    "malformed": (
        ["experiment", "add", "x", "--model", "paper_mlp", "--set", "learning_rate"],
        ["must look like key=value"],
    ),
    "repeated": (["sweep", "s", "--grid", "learning_rate=0.1,0.1"], ["values must be distinct"]),
    "sweep bounds": (["sweep", "s", "--grid", "momentum_end=0.5,2"], ["momentum_end", "got 2"]),
    "sweep model": (
        ["sweep", "s", "--model", "nosuch", "--grid", "learning_rate=0.1"],
        ["--model: unknown model 'nosuch'"],
    ),
    "run": (["run", "--experiment", "nosuch"], ["--experiment: unknown experiment 'nosuch'", "paper_mlp"]),
}


def test_a_bad_experiment_is_refused_in_one_line_before_anything_is_stored(tmp_path) -> None:
    """Each case is its own `gan-pipeline` process, three at a time (each spends most of its time importing)."""

    def refuse(name: str) -> subprocess.CompletedProcess:
        scratch = tmp_path / name.replace(" ", "_")
        return cli(scratch / "home", scratch / "data", *BAD_EXPERIMENT_CASES[name][0], timeout=120)

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = dict(zip(BAD_EXPERIMENT_CASES, pool.map(refuse, BAD_EXPERIMENT_CASES), strict=True))
    for name, completed in outcomes.items():
        scratch, expected = tmp_path / name.replace(" ", "_"), BAD_EXPERIMENT_CASES[name][1]
        lines = completed.stderr.strip().splitlines()
        assert completed.returncode != 0, name
        assert len(lines) == 1 and "Traceback" not in completed.stderr, (name, completed.stderr)
        assert all(part in lines[0] for part in expected), (name, lines[0])
        assert not (scratch / "data" / "experiments.json").exists(), name  # nothing stored, nothing run
        assert not (scratch / "data" / "models").exists(), name


def test_an_experiment_added_at_run_time_survives_a_restart_of_the_code_location(tmp_path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    added = cli(home, data, "experiment", "add", "lr05", "--model", "paper_mlp", "--set", "learning_rate=0.05")
    assert added.returncode == 0, added.stderr
    assert "experiment lr05 added" in added.stdout
    # a new process loads the code location afresh and opens the same instance: the partition is there
    script = (
        "import json, dagster as dg\n"
        "from pipelines.definitions import defs\n"
        "from assets.partitions import dataset_experiment_partitions\n"
        "definitions = defs()\n"
        "storage = definitions.resources['storage']\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    keys = dataset_experiment_partitions.get_partition_keys(dynamic_partitions_store=instance)\n"
        "    print('RESULT', json.dumps({'keys': [str(k) for k in keys],\n"
        "        'settings': dict(storage.experiments.get('lr05').settings)}))\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "GAN_PIPELINE_DATA_DIR": str(data)}
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    found = json.loads(loaded.stdout.split("RESULT ", 1)[1])
    assert "digits|lr05" in found["keys"] and "mnist|lr05" in found["keys"] and "digits|paper_mlp" in found["keys"]
    assert found["settings"] == {"learning_rate": 0.05}
    listed = cli(home, data, "experiment", "list")
    assert "lr05: paper_mlp, seeds [0], learning_rate=0.05" in listed.stdout


@pytest.mark.slow
def test_two_experiments_of_one_model_are_compared_in_the_report_and_its_table(digits_data) -> None:
    with digits_graph(digits_data) as (storage, defs, instance):
        storage.experiments.add([Experiment("digits_lr03", "paper_mlp", {"learning_rate": 0.03}, (0, 1))])
        register_experiments(instance, storage.experiments.names())
        for name in ("paper_mlp", "digits_lr03"):
            run_config = {"ops": {"gan_model": {"config": {"epochs": 2}}, **FAST}}
            result = defs.resolve_job_def("training_job").execute_in_process(
                partition_key=dataset_experiment_key("digits", name), instance=instance, run_config=run_config
            )
            assert result.success
        trained = result.asset_materializations_for_node("gan_model")[0].metadata
        assert trained["experiment_settings"].value == {"learning_rate": 0.03}
        assert trained["experiment"].value["seeds"] == [0, 1]
        report = defs.resolve_job_def("report_job").execute_in_process(instance=instance)
        assert report.success
        metadata = report.asset_materializations_for_node("evaluation_report")[0].metadata
    # both experiments keep their own runs: neither overwrote the other's partition index
    assert len(storage.layout.trained_runs("digits", "paper_mlp")) == 1
    assert len(storage.layout.trained_runs("digits", "digits_lr03")) == 2
    rows = {record.data["experiment"]: record.data for record in metadata["experiments"].value.records}
    assert rows["digits_lr03"]["settings"] == "learning_rate=0.03" and rows["digits_lr03"]["seeds"] == 2
    assert rows["paper_mlp"]["model"] == "paper_mlp" and rows["paper_mlp"]["seeds"] == 1
    assert [row["best"] for row in rows.values()].count(True) == 1
    assert any("real test images" in name for name in rows) and any(
        "the ceiling" in name for name in rows
    )  # digits: no paper row
    table = pd.read_csv(metadata["experiments_csv"].value)
    trained_rows = table[table["seeds"].notna()]
    assert list(trained_rows["frechet_distance"]) == sorted(trained_rows["frechet_distance"])  # best first
    page = Path(metadata["report_html"].value).read_text()
    assert "<h2 id=experiments>" in page and "digits_lr03" in page and "learning_rate=0.03" in page


@pytest.mark.slow
def test_a_sweep_trains_its_points_in_one_loop_and_a_relaunch_trains_nothing(digits_data, tmp_path) -> None:
    home = tmp_path / "home"
    args = ["sweep", "lrm", "--dataset", "digits", "--model", "paper_mlp", "--seeds", "0", "1", "--epochs", "2"]
    # two points (test_a_sweep_is_one_experiment_per_grid_point crosses a grid) x two seeds, with a shared setting
    args += ["--grid", "learning_rate=0.05,0.1", "--set", "momentum_end=0.6", "--samples", "500"]
    first = cli(home, digits_data, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "sweep lrm: 2 points x 2 seeds (2 new experiments)" in first.stdout
    names = [f"lrm-learning_rate{lr}" for lr in (0.05, 0.1)]
    checkpoints = {name: sorted(digits_data.glob(f"models/digits/{name}/*/checkpoint.pt")) for name in names}
    assert all(len(found) == 2 for found in checkpoints.values()), checkpoints
    with dg.DagsterInstance.from_config(str(home)) as instance:
        keys = dataset_experiment_partitions.get_partition_keys(dynamic_partitions_store=instance)
        assert {f"digits|{name}" for name in names} <= {str(key) for key in keys}
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"gan_pipeline/sweep": "lrm"}))
        assert len(runs) == 5  # the dataset, a training run per point, the promotion, the report
        logs = "\n".join(entry.user_message for run in runs for entry in instance.all_logs(run.run_id))
    # the first point's step trained all 4 runs (2 points x 2 seeds) in one loop; the other found its own stored
    assert "4 runs (seeds [0, 1, 0, 1]) in one loop" in logs
    stored = {
        name: [json.loads(path.read_text())["config"] for path in found[0].parent.parent.glob("*/run.json")]
        for name, found in checkpoints.items()
    }
    configs = {
        name: {(config["learning_rate"], config["momentum_end"]) for config in runs} for name, runs in stored.items()
    }
    assert configs[names[0]] == {(0.05, 0.6)} and configs[names[1]] == {(0.1, 0.6)}
    report = digits_data / "reports"
    assert (report / "sweep_digits_lrm.png").stat().st_size > 1000
    table = pd.read_csv(report / "experiments.csv")
    assert sorted(table.loc[table["sweep"] == "lrm", "experiment"]) == sorted(names)

    before = {path: path.stat().st_mtime_ns for found in checkpoints.values() for path in found}
    again = cli(home, digits_data, *args)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "(0 new experiments)" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in before} == before  # nothing trained again
    with dg.DagsterInstance.from_config(str(home)) as instance:
        latest = instance.fetch_materializations(dg.AssetKey("gan_model"), limit=2).records
        assert len(latest) == 2 and all(r.asset_materialization.metadata["cached"].value for r in latest)
