"""The whole asset graph on digits through Dagster in-process: checks, caching, the report."""

import dagster as dg
import pandas as pd
import pytest

from pipelines.cli import run_pipeline
from pipelines.definitions import build_definitions
from pipelines.partitions import dataset_model_key
from pipelines.resources import StorageResource
from tests.helpers import TEST_ARTIFACTS, chromium_page

FAST_TRAINING = {"epochs": 3, "seeds": [0, 1]}
FAST_SAMPLING = {"count": 2000}


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The whole graph on digits once for this module: (definitions, outcome, storage, instance). The tests run in
    file order: the second re-runs the first's partition."""
    storage = StorageResource(root_dir=str(tmp_path_factory.mktemp("pipeline") / "data"))
    with dg.instance_for_test() as instance:
        defs = build_definitions(storage=storage)
        outcome = run_pipeline(
            "digits", "paper_mlp", FAST_TRAINING, instance=instance, defs=defs, sample_config=FAST_SAMPLING
        )
        yield defs, outcome, storage, instance


@pytest.fixture
def digits_run(pipeline_run):  # noqa: ANN001, ANN201
    return pipeline_run[:2]


@pytest.fixture
def storage(pipeline_run):  # noqa: ANN001, ANN201
    return pipeline_run[2]


@pytest.fixture
def instance(pipeline_run):  # noqa: ANN001, ANN201
    return pipeline_run[3]


def test_whole_graph_on_digits(digits_run, storage, instance) -> None:
    _, outcome = digits_run
    assert outcome["failed_checks"] == []
    model = latest_metadata(instance, "gan_model")
    assert model["epochs"] == 3 and model["cached"] is False and model["device"] == "cpu"
    assert model["sample_grid"].startswith("![samples](data:image/png;base64,")
    assert model["loss_curve"].startswith("![loss curve](data:image/png;base64,")
    samples = latest_metadata(instance, "generated_samples")
    assert samples["count"] == 2000 and len(samples["paths"]) == 2
    bandwidth = latest_metadata(instance, "parzen_bandwidth")
    assert 0.1 <= bandwidth["sigma"] <= 1.0
    search = bandwidth["table"]  # a Dagster table: one row per seed and sigma, the chosen one marked
    assert {column.name for column in search.schema.columns} >= {"seed", "sigma", "mean_valid_log_likelihood"}
    assert len(search.records) == 2 * 10 and sum(r.data["chosen"] for r in search.records) == 2
    score = latest_metadata(instance, "parzen_log_likelihood")
    assert score["n_test"] == 300 and score["n_samples"] == 2000 and score["seeds"] == 2

    table = pd.read_csv(storage.layout.report_dir() / "parzen_table1.csv")
    ours = table[(table["dataset"] == "digits") & (table["model"] == "paper_mlp")]
    assert len(ours) == 1 and ours["seeds"].iloc[0] == 2
    runs = storage.layout.read_partition_index("parzen", "digits", "paper_mlp")["runs"]
    means = [run["mean_log_likelihood"] for run in runs]
    assert ours["mean"].iloc[0] == pytest.approx(sum(means) / 2)
    assert ours["error"].iloc[0] == pytest.approx(pd.Series(means).std(ddof=1))
    paper = table[(table["dataset"] == "mnist") & (table["model"] == "Adversarial nets")]
    assert paper["mean"].iloc[0] == 225.0 and paper["error"].iloc[0] == 2.0
    reference = table[table["source"] == "reference: estimator ceiling"]
    assert list(reference["dataset"]) == ["digits"]
    html = (storage.layout.report_dir() / "report.html").read_text()
    assert "Adversarial nets" in html and "paper_mlp" in html
    assert "file://" not in html and str(storage.layout.path()) not in html  # no paths: it opens from anywhere
    assert html.count('src="data:image/png;base64,') == 5  # samples, losses, sigma search, Figures 2 and 3
    summary = pd.read_csv(storage.layout.report_file("summary.csv"))
    assert list(summary["model"][:1]) == ["paper_mlp"] and summary["seeds"].iloc[0] == 2


def test_report_opens_from_another_folder_with_every_figure(digits_run, storage, tmp_path) -> None:
    """The published report is one file: copied elsewhere, Chromium shows its tables and decodes every figure."""
    moved = tmp_path / "elsewhere" / "report.html"
    moved.parent.mkdir()
    moved.write_bytes(storage.layout.report_file("report.html").read_bytes())
    with chromium_page() as page:
        page.goto(moved.as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        tables = page.evaluate(
            "Array.from(document.querySelectorAll('table')).map(t => Array.from(t.rows).map(r => r.innerText))"
        )
        TEST_ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(TEST_ARTIFACTS / "report.png"), full_page=True)
    assert len(images) == 5 and all(complete and width > 0 for _, complete, width in images), images
    summary, table1, metrics = tables
    assert "paper_mlp" in summary[1] and "the ceiling" in summary[-1]
    assert any("Adversarial nets" in row and "225.0 ± 2.0" in row for row in table1)
    assert "<NA>" not in str(tables) and "nan" not in str(tables).lower().replace("nats", "")
    assert any(row.startswith("digits\tpaper_mlp\t2\t") for row in metrics)  # seeds as an integer


def test_unchanged_rerun_is_cached_and_new_settings_retrain(digits_run, storage, instance) -> None:
    defs, _ = digits_run
    model_dir = storage.layout.path("models", "digits", "paper_mlp")
    checkpoints = sorted(model_dir.glob("*/checkpoint.pt"))
    stamps = {path: path.stat().st_mtime_ns for path in checkpoints}
    key = dataset_model_key("digits", "paper_mlp")
    job = defs.resolve_job_def("training_job")
    run_config = {"ops": {"gan_model": {"config": FAST_TRAINING}, "generated_samples": {"config": FAST_SAMPLING}}}
    assert job.execute_in_process(partition_key=key, instance=instance, run_config=run_config).success
    for name in ("gan_model", "generated_samples", "parzen_bandwidth", "parzen_log_likelihood"):
        assert latest_metadata(instance, name)["cached"] is True, name
    assert {path: path.stat().st_mtime_ns for path in checkpoints} == stamps  # no training happened

    changed = {
        "ops": {
            "gan_model": {"config": {**FAST_TRAINING, "learning_rate": 0.05}},
            "generated_samples": {"config": FAST_SAMPLING},
        }
    }
    assert job.execute_in_process(partition_key=key, instance=instance, run_config=changed).success
    assert latest_metadata(instance, "gan_model")["cached"] is False
    assert len(list(model_dir.glob("*/checkpoint.pt"))) == 4  # two new seeds, old results kept
    assert latest_metadata(instance, "gan_model")["config"]["learning_rate"] == 0.05
