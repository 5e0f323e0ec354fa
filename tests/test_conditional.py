"""A conditional GAN through the Dagster graph on digits: samples stored with the labels they were drawn for, a
per-class grid, conditional accuracy and per-class Fréchet distance in the metrics and the report."""

import dagster as dg
import numpy as np
import pandas as pd

from assets.partitions import dataset_experiment_key
from gan_core.sample import asked_labels, read_sample_labels
from tests.helpers import digits_graph


def test_conditional_paper_mlp_through_the_graph(digits_data) -> None:
    with digits_graph(digits_data) as (storage, defs, instance):
        run_config = {
            "ops": {
                "gan_model": {"config": {"epochs": 2, "batch_size": 64}},
                "generated_samples": {"config": {"count": 1000}},
            }
        }
        trained = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("digits", "paper_mlp_cond"), instance=instance, run_config=run_config
        )
        assert trained.success
        checks = {e.check_name: e.passed for e in trained.get_asset_check_evaluations()}
        assert checks["training_did_not_diverge"] and checks["samples_finite_in_unit_range"]
        samples = storage.layout.sample_sets("digits", "paper_mlp_cond")[0]
        np.testing.assert_array_equal(read_sample_labels(samples["path"]), asked_labels(1000, 10))
        event = instance.get_latest_materialization_event(dg.AssetKey("generated_samples"))
        assert event.asset_materialization.metadata["class_grid"].value.startswith("One row per class")
        assert storage.layout.figure("digits", "paper_mlp_cond", "class_grid").is_file()

        (metrics,) = storage.layout.read_partition_index("metrics", "digits", "paper_mlp_cond")["runs"]
        assert 0.0 <= metrics["conditional_accuracy"] <= 1.0 and len(metrics["class_frechet_distances"]) == 10
        assert metrics["class_frechet_distance"] == np.nanmean(metrics["class_frechet_distances"])

        assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
        html = storage.layout.report_file("report.html").read_text()
        assert "conditional accuracy" in html and "one row per class" in html
        report = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
        rows = {r.data["model"]: r.data for r in report.asset_materialization.metadata["metrics"].value.records}
        assert rows["paper_mlp_cond"]["conditional_accuracy"] == round(metrics["conditional_accuracy"], 3)
        real = next(data for model, data in rows.items() if model.startswith("real test images"))
        assert real["conditional_accuracy"] >= 0.9  # real test images against their own labels: the classifier's
        summary = pd.read_csv(storage.layout.report_file("summary.csv")).set_index("model")
        assert summary.loc["paper_mlp_cond", "conditional_accuracy"] == round(metrics["conditional_accuracy"], 4)
