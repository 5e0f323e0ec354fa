"""The paper's next steps through the Dagster graph on digits: a semi-supervised GAN (Salimans et al. 2016) with its
labelled subset drawn by the seed and stored, its test error beside a supervised baseline in the metrics and the
report; and the learned inverse E(x) -> z of a trained generator, with its probe and reconstructions."""

import re

import dagster as dg
import numpy as np
import pytest
import torch

from assets.configs import check_run_config
from assets.partitions import dataset_experiment_key
from gan_core.checkpoint import load_checkpoint
from gan_core.config import default_train_config
from gan_core.data import load_split_arrays
from gan_core.experiments import Experiment
from gan_core.inference import probe_accuracy
from gan_core.semi_supervised import labelled_subset, read_labelled_subset
from tests.helpers import digits_graph

SHORT = {
    "gan_model": {"config": {"epochs": 2, "labels_per_class": 5}},
    "generated_samples": {"config": {"count": 1000}},
}


def test_semi_supervised_gan_through_the_graph(digits_data) -> None:
    with digits_graph(digits_data) as (storage, defs, instance):
        key = dataset_experiment_key("digits", "paper_mlp_ssl")
        result = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=key, instance=instance, run_config={"ops": SHORT}
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["training_did_not_diverge"] and checks["samples_finite_in_unit_range"]
        layout = storage.layout
        labels = load_split_arrays(layout.dataset_file("digits"), "train").labels
        for run in layout.trained_runs("digits", "paper_mlp_ssl"):
            assert run["config"]["loss"] == "feature_matching" and run["config"]["labels_per_class"] == 5
            history = load_checkpoint(run["checkpoint"])["history"]
            assert len(history) == 2 and all(np.isfinite([e["d_loss"], e["g_loss"]]).all() for e in history)
            stored = read_labelled_subset(layout.run_dir("digits", "paper_mlp_ssl", run["identity"]))
            np.testing.assert_array_equal(stored, labelled_subset(labels, 5, run["seed"]))  # drawn again from its seed
            assert np.bincount(labels[stored], minlength=10).tolist() == [5] * 10

        rows = layout.read_partition_index("metrics", "digits", "paper_mlp_ssl")["runs"]
        for row in rows:
            assert 0.0 <= row["ssl_test_error"] <= 1.0 and 0.0 <= row["supervised_baseline_error"] <= 1.0
            assert row["labelled_images"] == 50
        assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
        report = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
        shown = {r.data["model"]: r.data for r in report.asset_materialization.metadata["metrics"].value.records}
        mean_error = np.mean([row["ssl_test_error"] for row in rows])
        assert shown["paper_mlp_ssl"]["ssl_test_error"] == pytest.approx(mean_error, abs=1e-4)
        assert "ssl test error" in layout.report_file("report.html").read_text()


def test_the_learned_inverse_of_a_trained_generator(digits_data) -> None:
    with digits_graph(digits_data) as (storage, defs, instance):
        run_config = {"ops": {"gan_model": {"config": {"epochs": 3}}, "generated_samples": {"config": {"count": 1000}}}}
        inference_config = {"ops": {"latent_encoder": {"config": {"steps": 300}}}}
        key = dataset_experiment_key("digits", "paper_mlp")
        trained = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=key, instance=instance, run_config=run_config
        )
        assert trained.success
        first = defs.resolve_job_def("inference_job").execute_in_process(
            partition_key=key, instance=instance, run_config=inference_config
        )
        assert first.success
        checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
        assert checks["encoder_predicts_noise"].passed, checks["encoder_predicts_noise"].description
        (record,) = storage.layout.read_partition_index("inference", "digits", "paper_mlp")["runs"]
        assert record["inverse"] == "fitted to (G(z), z) after training"
        assert record["latent_mse"] < 1.0 and 0.0 < record["reconstruction_mse"] < 1.0
        assert 0.1 < record["encoder_probe_accuracy"] <= 1.0 and record["pixel_probe_accuracy"] > 0.8
        assert storage.layout.figure("digits", "paper_mlp", "reconstructions").is_file()
        (metrics,) = storage.layout.read_partition_index("metrics", "digits", "paper_mlp")["runs"]
        assert "ssl_test_error" not in metrics  # not a semi-supervised model
        assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
        report = instance.get_latest_materialization_event(dg.AssetKey("evaluation_report"))
        shown = {r.data["model"]: r.data for r in report.asset_materialization.metadata["metrics"].value.records}
        assert shown["paper_mlp"]["encoder_probe_accuracy"] == round(record["encoder_probe_accuracy"], 3)
        html = storage.layout.report_file("report.html").read_text()
        assert "test images (odd rows) above their reconstructions" in html

        again = defs.resolve_job_def("inference_job").execute_in_process(
            partition_key=key, instance=instance, run_config=inference_config
        )
        assert again.success
        (cached,) = storage.layout.read_partition_index("inference", "digits", "paper_mlp")["runs"]
        assert cached["cached"] and cached["key"] == record["key"]  # the same generator: nothing fitted again


def test_bigan_learns_its_encoder_with_its_generator_and_the_inverse_scores_it(digits_data) -> None:
    with digits_graph(digits_data) as (storage, defs, instance):
        run_config = {
            "ops": {
                "gan_model": {"config": {"epochs": 2, "batch_size": 64}},
                "generated_samples": {"config": {"count": 1000}},
            }
        }
        key = dataset_experiment_key("digits", "paper_mlp_bigan")
        result = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=key,
            instance=instance,
            run_config=run_config,
            asset_selection=[dg.AssetKey("gan_model"), dg.AssetKey("generated_samples")],
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["training_did_not_diverge"] and checks["samples_finite_in_unit_range"]
        assert defs.resolve_job_def("inference_job").execute_in_process(partition_key=key, instance=instance).success
        (run,) = storage.layout.trained_runs("digits", "paper_mlp_bigan")
        state = load_checkpoint(run["checkpoint"])
        assert any(key.startswith("encoder.") for key in state["generator"])  # trained with G, stored with it
        assert all(np.isfinite([e["d_loss"], e["g_loss"]]).all() for e in state["history"])
        (record,) = storage.layout.read_partition_index("inference", "digits", "paper_mlp_bigan")["runs"]
        assert record["inverse"] == "learned with G (BiGAN)" and np.isfinite(record["latent_mse"])
        assert 0.0 <= record["encoder_probe_accuracy"] <= 1.0
        assert storage.layout.figure("digits", "paper_mlp_bigan", "reconstructions").is_file()


def test_the_probe_separates_what_is_separable() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    separable = np.eye(3)[labels] * 4 + rng.normal(size=(600, 3))
    assert probe_accuracy(separable[:400], labels[:400], separable[400:], labels[400:]) > 0.9
    noise = rng.normal(size=(600, 3))
    assert probe_accuracy(noise[:400], labels[:400], noise[400:], labels[400:]) < 0.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"labels_per_class": 0}, "semi-supervised: labels_per_class must be at least 1, got 0"),
        ({"loss": "hinge"}, "its D(x) is a probability, so loss must be one of"),
        ({"update": "simultaneous"}, "it trains with update='alternating'"),
    ],
)
def test_bad_semi_supervised_settings_are_refused_in_one_line(settings, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_run_config({"gan_model": {"config": settings}}, "digits", Experiment("ssl", "paper_mlp_ssl"))


def test_labels_per_class_and_feature_matching_need_a_semi_supervised_model() -> None:
    with pytest.raises(ValueError, match="labels_per_class=3 applies to the semi-supervised models"):
        default_train_config("paper_mlp", labels_per_class=3)
    with pytest.raises(ValueError, match="loss 'feature_matching' matches D's features"):  # no regex characters
        default_train_config("paper_mlp", "feature_matching")
    with pytest.raises(ValueError, match="class 1 has only 2 training images; use at most 2"):
        labelled_subset(np.array([0, 0, 0, 1, 1]), 3, seed=0)


def test_the_labelled_subset_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    labels = np.repeat(np.arange(10), 50)
    first, again, other = labelled_subset(labels, 4, 7), labelled_subset(labels, 4, 7), labelled_subset(labels, 4, 8)
    np.testing.assert_array_equal(first, again)
    assert set(first) != set(other) and np.bincount(labels[first]).tolist() == [4] * 10
    assert torch.equal(torch.as_tensor(first), torch.as_tensor(np.sort(first)))  # sorted indices
